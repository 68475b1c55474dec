"""The fidelity check's 1-LSB rule with the cut model against each segment in its own
sessions, on one model: the same failures, notes and per-quantizer / per-output figures,
and the time of each check (no latency row).

Run: ``PYTHONPATH=app python benchmarks/segments_same.py [MODEL NAME=SIZE ...]`` (without a
model: the realistic CRNN of bench_models.py); W8A8, min-max, 16 random samples.
"""

from __future__ import annotations

import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import crnn
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import fidelity, segments
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from bitlens.core.results import drain


def main(argv: list[str]) -> int:
    np.seterr(all="ignore")
    with tempfile.TemporaryDirectory(prefix="bitlens-segments-") as tmp:
        if argv:
            path, dims = Path(argv[0]), {k: int(v) for k, v in (a.split("=") for a in argv[1:])}
        else:
            path, dims = Path(tmp) / "crnn.onnx", {"N": 1}
            onnx.save(crnn(), path)
        model = load_model(path)
        engine = Engine(model, Dataset.random(model.info, n=16, dims=dims, seed=1), device="cpu")
        drain(engine.calibrate("minmax"))
        plan = Plan.preset(model.info, "W8A8")
        result = drain(export(engine, plan, Path(tmp) / "o.onnx", ExportOptions()))
        reports, seconds = [], []
        for one_by_one in (False, True):
            fidelity.local_checks = functools.partial(segments.local_checks, one_by_one=one_by_one)
            t0 = time.perf_counter()
            reports.append(drain(fidelity.check_fidelity(engine, plan, result, latency_budget_s=0)))
            seconds.append(time.perf_counter() - t0)
        engine.close()
    cut, alone = reports
    same = (
        cut.failures == alone.failures
        and cut.notes == alone.notes
        and repr(cut.quantizers) == repr(alone.quantizers)  # repr: NaN equals NaN
        and repr(cut.outputs) == repr(alone.outputs)
    )
    local = [q.local_lsb for q in cut.quantizers if q.local_lsb is not None]
    print(
        f"{path.name}: {len(local)} quantizers checked on their own segment (max "
        f"{max(local, default=0):g} LSB), passed {cut.passed}; cut model {seconds[0]:.1f} s, "
        f"one by one {seconds[1]:.1f} s; same verdicts: {same}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
