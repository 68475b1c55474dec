"""Fuzz every reader of Bitlens at scale and print the counts by outcome.

    .venv/bin/python benchmarks/fuzz.py                  # 10,000 models, 2,000 data/plan files
    .venv/bin/python benchmarks/fuzz.py --models 500 --data 200 --seed 7

Each case runs in a worker subprocess with its address space limited to
its size after imports plus the memory budget (``--budget``, given to
Bitlens as BITLENS_MEMORY_BUDGET) and a margin, and a per-case timeout
(``--timeout``). Outcomes: ``loaded`` and ``error`` (a BitlensError with a
one-line message) are fine; ``bad_message``, ``crash``, ``memory``,
``over_budget``, ``hang`` and ``died`` are failures, listed grouped by
message. The exit status is 1 when there is any failure. The case
generator and worker live in tests/fuzz/ (shared with the CI test).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "app"))

from tests.fuzz import FAILURES, Report  # noqa: E402
from tests.fuzz.datacases import data_cases  # noqa: E402
from tests.fuzz.models import model_cases  # noqa: E402
from tests.fuzz.runner import Runner, run_cases  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=10_000)
    ap.add_argument("--data", type=int, default=2_000, help="data, plan and overrides files")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    ap.add_argument("--budget", default="1G", help="BITLENS_MEMORY_BUDGET for the worker")
    ap.add_argument(
        "--engine", type=int, default=0, metavar="N",
        help="also N model cases that go on as the window does: random data, an ONNX Runtime "
        "engine, calibration, a W8A8 evaluation",
    )  # fmt: skip
    args = ap.parse_args(argv)
    runner = Runner(timeout=args.timeout, budget=args.budget)
    total_fail = 0
    try:
        with tempfile.TemporaryDirectory(prefix="bitlens-fuzz-") as scratch:
            for label, gen in (
                ("models", model_cases(args.models, args.seed, Path(scratch))),
                ("models+engine", model_cases(args.engine, args.seed + 7, Path(scratch), True)),
                ("data/plan", data_cases(args.data, args.seed, Path(scratch))),
            ):
                t0 = time.perf_counter()
                report = run_cases(gen, runner, _progress(label))
                print(file=sys.stderr)
                total_fail += _print(label, report, time.perf_counter() - t0)
    finally:
        runner.close()
    return 1 if total_fail else 0


def _progress(label: str):
    n = [0]

    def show(_res) -> None:
        n[0] += 1
        if n[0] % 100 == 0:
            print(f"\r{label}: {n[0]} cases", end="", file=sys.stderr, flush=True)

    return show


def _print(label: str, report: Report, seconds: float) -> int:
    counts = report.counts()
    n = len(report.results)
    if not n:
        return 0
    print(f"{label}: {n} cases in {seconds:.0f} s")
    for outcome in ("loaded", "error", *FAILURES):
        print(f"  {outcome:12s} {counts.get(outcome, 0)}")
    kinds = Counter((r.case.kind, r.outcome) for r in report.results)
    if len({k for k, _ in kinds}) > 1:
        for kind in sorted({k for k, _ in kinds}):
            parts = ", ".join(f"{o} {c}" for (k, o), c in sorted(kinds.items()) if k == kind)
            print(f"    {kind:10s} {parts}")
    bad = report.failures()
    groups = Counter((r.outcome, r.message[:160]) for r in bad)
    for (outcome, msg), c in groups.most_common(30):
        example = next(r for r in bad if r.outcome == outcome and r.message[:160] == msg)
        print(f"  FAIL x{c} {outcome}: {msg}  (e.g. {example.case.base}: {example.case.mutation})")
    return len(bad)


if __name__ == "__main__":
    raise SystemExit(main())
