"""The TensorRT-target W8A8 export on ONNX Runtime's CUDA and TensorRT execution providers.

For each built-in model of bench_export.py (or ``--only``): Bitlens exports
``Plan.preset(W8A8, target="tensorrt")`` and fidelity-checks it on the CPU,
the file is checked against TensorRT's documented Q/DQ rules
(bitlens.core.export.tensorrt), then one session per execution provider
(CPU, CUDA, TensorRT) runs it on the evaluation samples. Printed per
provider: whether the session really got that provider (ONNX Runtime falls
back to the CPU silently), output SQNR against the float model on the CPU,
the largest difference from the CPU run of the same file, and the median
latency of 50 runs. A provider that is not in the onnxruntime build, or
that cannot load its libraries (ONNX Runtime then falls back to the CPU), is
reported as not run, which is no failure: on a machine without a GPU only
the CPU rows and the rules check count. The exit status is 1 when the rules
check or the fidelity check fails, or a provider that did run gives outputs
far from the CPU's (SQNR against them below 25 dB), else 0.

Run: ``python benchmarks/gpu_check.py [--only cnn] [--runs 50]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from bench_export import cnn, crnn, export_bitlens, lcnet, transformer
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import ExportOptions
from bitlens.core.export.tensorrt import structural_problems
from bitlens.core.metrics import sqnr_db
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan

PROVIDERS = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
CLOSE_DB = 25.0  # a GPU kernel rounds differently from the CPU's, but not this much
MODELS = {"cnn": cnn, "crnn": crnn, "transformer": transformer, "lcnet": lcnet}


def check(name: str, proto: onnx.ModelProto, tmp: Path, runs: int) -> bool:
    src = tmp / f"{name}.onnx"
    onnx.save(proto, str(src))
    model = from_proto(proto, src)
    data = Dataset.random(model.info, 8, {}, seed=2)
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    plan = Plan.preset(engine.info, "W8A8", target="tensorrt")
    out = tmp / f"{name}_trt.onnx"
    summary = export_bitlens(engine, plan, out, ExportOptions())
    problems, advice = structural_problems(onnx.load(str(out)))
    print(f"\n{name}: {summary}; TensorRT Q/DQ rules: "
          f"{'passed' if not problems else 'FAILED: ' + '; '.join(problems)}"
          f"{f' ({len(advice)} recommendations)' if advice else ''}")  # fmt: skip
    feeds = [data.samples[i] for i in data.evaluation]
    cpu_float = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    ref = np.concatenate([cpu_float.run(None, f)[0] for f in feeds])
    available = ort.get_available_providers()
    base: np.ndarray | None = None
    ran: list[str] = []
    ok = not problems and "passed" in summary
    for prov in PROVIDERS:
        if prov not in available:
            print(f"  {prov:27s} not available in this onnxruntime build")
            continue
        try:
            sess = ort.InferenceSession(
                str(out), providers=list(dict.fromkeys([prov, PROVIDERS[0]]))
            )
        except Exception as exc:  # a provider that cannot start (no driver, no TensorRT libs)
            print(f"  {prov:27s} failed to start: {str(exc).splitlines()[0]}")
            ok = False
            continue
        used = sess.get_providers()[0]
        if used != prov:
            print(f"  {prov:27s} not run: ONNX Runtime fell back to {used} (see its log above)")
            continue
        got = np.concatenate([sess.run(None, f)[0] for f in feeds])
        if prov == "CPUExecutionProvider":
            base = got
        diff = float(np.max(np.abs(got - base))) if base is not None else float("nan")
        ok &= base is None or sqnr_db(base, got) >= CLOSE_DB
        ran.append(prov)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, feeds[0])
            times.append(1000 * (time.perf_counter() - t0))
        print(f"  {prov:27s} ran on {used}; SQNR {sqnr_db(ref, got):.1f} dB vs float; "
              f"max |diff| from CPU {diff:.3g}; median {statistics.median(times):.3f} ms")  # fmt: skip
    print(f"  ran on: {', '.join(ran)}")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=list(MODELS))
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    print(f"onnxruntime {ort.__version__}; providers {ort.get_available_providers()}")
    with tempfile.TemporaryDirectory(prefix="bitlens-gpu-") as tmp:
        results = {n: check(n, MODELS[n](), Path(tmp), args.runs) for n in args.only or MODELS}
    failed = [n for n, ok in results.items() if not ok]
    print(f"\nfailed: {', '.join(failed)}" if failed else "\nall checks passed")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
