"""Accuracy recovery vs plain rounding: model-output SQNR of uniform plans.

For each model, every Conv/Gemm/MatMul layer gets the same integer weight format (and
activation format: float for the weight methods, int8 for SmoothQuant, which moves
activation outliers into the weights) and either plain rounding or one recovery method
(where the method applies to the layer; the others keep plain rounding at the same
format, so the bytes are equal). Recovery statistics come from the calibration feeds; the SQNR is measured on the
evaluation feeds, which the methods never saw. Prints one table per model::

    python benchmarks/bench_recovery.py                       # samples + ddddocr common
    python benchmarks/bench_recovery.py --models text_transformer --json out.json

Targets (issue 14): GPTQ at int4 per channel >= 3 dB over plain rounding; bias correction
measurably better on int4/int3 convolutions; SmoothQuant's gain at W8A8 shown next to them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import PlanError
from bitlens.core.model.loader import load_model
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery import RECOVERY_CHOICES, smooth
from bitlens.core.recovery.support import check_recovery

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "resources" / "samples"
DDDDOCR = Path("/tmp/wheels/x/ddddocr/common.onnx")
# (weight format, activation format, methods compared with plain rounding)
RUNS = (
    ("int4 sym ch", None, tuple(m for m in RECOVERY_CHOICES if m != "smoothquant")),
    ("int3 sym ch", None, ("bias_correction", "gptq")),
    ("int4 asym blk32", None, ("gptq", "awq")),
    ("int8 sym ch", "int8 asym", ("smoothquant",)),  # W8A8
    ("int8 sym ch", "int6 asym", ("smoothquant",)),  # activations harder than weights
)


def _ddddocr_data(info, n: int) -> Dataset:
    sys.path.insert(0, str(ROOT))
    from tests.real import inputs  # rendered text lines (ddddocr's preprocessing)

    lines = np.stack([inputs.text_line(128, 64, seed=i) for i in range(n)])[:, None]
    return Dataset.from_arrays(info, {"input1": (lines / 255.0 - 0.5) / 0.5})


def load(name: str, n: int):
    if name == "ddddocr":
        model = load_model(DDDDOCR)
        return model, _ddddocr_data(model.info, n)
    model = load_model(SAMPLES / name / "model.onnx")
    return model, Dataset.from_npz(SAMPLES / name / "data.npz", model.info)


def plan_for(
    info, fmt: str, method: str | None, ops: set[str], act: str | None = None
) -> tuple[Plan, int]:
    """``fmt`` (and ``act``) on every Conv/Gemm/MatMul layer, ``method`` where it applies."""
    choices, n = {}, 0
    for layer in info.layers:
        if layer.op_type not in ops:
            continue
        a = act if layer.activations else None
        choice = LayerChoice.of(fmt, a)
        if method is not None:
            wanted = LayerChoice.of(fmt, a, False, method)
            try:
                check_recovery(layer, choice.weight, wanted.recovery)
                choice, n = wanted, n + 1
            except PlanError:
                pass
        choices[layer.name] = choice
    return Plan(info, choices), n


def output_sqnr(engine: Engine, plan: Plan) -> float:
    ev = engine.evaluate(plan)
    return min(o.error.sqnr_db for o in ev.outputs.values())


def bench(name: str, n: int, ops: set[str], runs=RUNS):
    """Rows (dicts) for one model, yielded as they are measured."""
    model, data = load(name, n)
    engine = Engine(model, data, device="cpu")
    for wfmt, act, methods in runs:
        fmt = wfmt if act is None else f"{wfmt} / {act}"
        base_plan, _ = plan_for(model.info, wfmt, None, ops, act)
        base = output_sqnr(engine, base_plan)
        yield {"model": name, "format": fmt, "method": "plain", "layers": 0,
               "sqnr_db": base, "gain_db": 0.0, "seconds": 0.0}  # fmt: skip
        for method in methods:
            plan, count = plan_for(model.info, wfmt, method, ops, act)
            t0 = time.perf_counter()
            s = output_sqnr(engine, plan)
            yield {"model": name, "format": fmt, "method": method, "layers": count,
                   "sqnr_db": s, "gain_db": s - base,
                   "seconds": time.perf_counter() - t0}  # fmt: skip
    engine.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+",
                   default=["text_transformer", "speech_kws", "digits_cnn", "ddddocr"])  # fmt: skip
    p.add_argument("--samples", type=int, default=16, help="feeds for ddddocr (half calibrate)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    p.add_argument("--only-activations", action="store_true",
                   help="only the runs with quantized activations (SmoothQuant)")
    p.add_argument("--smooth-alphas", type=float, nargs="+", metavar="A",
                   help="SmoothQuant's alpha grid (default: the per-layer search's "
                   f"{' '.join(map(str, smooth.ALPHAS))}; one value: that alpha everywhere)")
    args = p.parse_args(argv)
    if args.smooth_alphas:
        smooth.ALPHAS = tuple(args.smooth_alphas)
    ops = {"Conv", "Gemm", "MatMul"}
    rows: list[dict] = []
    print(f"{'model':17} {'weights / acts':26} {'method':16} {'layers':>6} {'SQNR dB':>8} "
          f"{'vs plain':>8} {'s':>6}", flush=True)  # fmt: skip
    for name in args.models:
        if name == "ddddocr" and not DDDDOCR.is_file():
            print(f"skipping ddddocr: {DDDDOCR} not found")
            continue
        runs = [r for r in RUNS if r[1] is not None] if args.only_activations else list(RUNS)
        for r in bench(name, args.samples, ops, runs):
            rows.append(r)
            print(f"{r['model']:17} {r['format']:26} {r['method']:16} {r['layers']:6d} "
                  f"{r['sqnr_db']:8.2f} {r['gain_db']:+8.2f} {r['seconds']:6.1f}",
                  flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
