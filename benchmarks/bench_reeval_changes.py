"""Re-evaluation per change (issue 11's worst case): the process CPU of each of
``bench_engine.py``'s 16 one-layer changes over a non-spinning float run of the evaluation
feeds made right before it, in several fresh engines, and per change the median over them.

One engine's 16 ratios, as ``bench_engine.py``'s re-evaluation row has them, move by a
third between runs on a loaded machine, so its "worst" picks whichever change the load hit;
the median over engines shows which changes are the costly ones (docs/benchmarks.md,
"Re-evaluation's worst case"). A/B: run it with one checkout's ``app`` on ``PYTHONPATH``,
then the other's, alternated.

Run: ``PYTHONPATH=app python benchmarks/bench_reeval_changes.py crnn --engines 2`` (or an
ONNX file with ``--dim NAME=SIZE``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import onnx

from bench_engine import SAMPLES, cpu_timed, engine_work, plain_session, settle
from bench_models import crnn
from bitlens.core.data import Dataset
from bitlens.core.model.loader import load_model


def ratios(path: Path, dims: dict[str, int], engines: int) -> tuple[list[str], list[list[float]]]:
    """(change labels, per engine the 16 changes' CPU over the float run before each)."""
    data = Dataset.random(load_model(path).info, n=SAMPLES, dims=dims, seed=1)
    quiet = plain_session(path, spin=False)
    float_eval = lambda: [quiet.run(None, data.samples[i]) for i in data.evaluation]  # noqa: E731
    float_eval()  # warm
    out: list[list[float]] = []
    labels: list[str] = []
    for _ in range(engines):
        base: list[float] = []

        def before(base: list[float] = base) -> None:
            settle()
            base.append(cpu_timed(float_eval))

        work = engine_work(path, dims, SAMPLES, True, before, sweep=False)
        out.append([c / f for c, f in zip(work["re_cpu"], base, strict=True)])
        labels = [f"{t} int{b}" for t in work["targets"] for b in (4, 2)]
    return labels, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="crnn or a path")
    ap.add_argument("--dim", action="append", default=[], help="NAME=SIZE for a file's inputs")
    ap.add_argument("--engines", type=int, default=2, help="fresh engines (2)")
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model)
        if args.model == "crnn":
            path = Path(tmp) / "crnn.onnx"
            onnx.save(crnn(), path)
            dims = {"N": 1}
        labels, rows = ratios(path, dims, args.engines)
    print(f"== {args.model}: {args.engines} engines, load average {os.getloadavg()[0]:.1f}")
    per_engine = ", ".join(f"{statistics.median(r):.2f} / {max(r):.2f}" for r in rows)
    print(f"per engine, median / worst change: {per_engine}")
    for label, values in zip(labels, zip(*rows, strict=True), strict=True):
        print(
            f"  {label:32s} median {statistics.median(values):5.2f}x  ({' '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
