"""How long the window's thread waits for the interpreter lock while an export runs.

The window's thread takes Python's lock each time Qt calls into Python (a slot, a paint, a
size hint a widget overrides); one progress report's pass does so about 16 times. This runs
the window's export job (``gui.jobs.export_model``: the W8A8 export and its fidelity check) on
a worker thread, as the window does, while a second thread stands in for the window: every
30 ms a burst of ``--burst`` lock entries (``time.sleep(0)``: the lock let go and taken again),
each timed less that thread's own wait for a CPU (``/proc/self/task/TID/schedstat``), so what
is left is the wait for the lock. Exports alternate, in one process, between Python's switch
interval (5 ms) and the window's (``gui/lock_switch.py``), ``--reps`` of each; per interval:
the bursts' median, 99th percentile and longest total wait, and the window's figures over
Python's. Offscreen, no Qt: the lock is the only thing measured.

Run: ``PYTHONPATH=app python benchmarks/bench_lock_waits.py [MODEL.onnx --dim NAME=SIZE]
[--reps 2] [--burst 16]`` (the generated CRNN without a model).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import crnn
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.gui import jobs
from bitlens.gui.lock_switch import WINDOW_SWITCH_S
from stall_watch import schedstat

PERIOD_S = 0.030  # progress_thinning.MIN_GAP_S: at most one report's pass per 30 ms


def bursts_during(run, burst: int) -> list[float]:
    """Each burst's total lock wait (seconds) while ``run()`` runs on a worker thread."""
    done = threading.Event()
    totals: list[float] = []

    def worker() -> None:
        try:
            run()
        finally:
            done.set()

    job = threading.Thread(target=worker, name="job")
    job.start()
    while not done.wait(PERIOD_S):
        total = 0.0
        for _ in range(burst):
            t, (_, w) = time.perf_counter(), schedstat() or (0.0, 0.0)
            time.sleep(0)
            waited = (schedstat() or (0.0, 0.0))[1] - w
            total += max(time.perf_counter() - t - waited, 0.0)
        totals.append(total)
    job.join()
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--dim", action="append", default=[])
    ap.add_argument("--reps", type=int, default=2, help="exports per interval (2)")
    ap.add_argument("--burst", type=int, default=16, help="lock entries per burst (16)")
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else Path(tmp) / "crnn.onnx"
        if not args.model:
            onnx.save(crnn(), path)
            dims = dims or {"N": 1}
        session = drain(jobs.open_model(path, jobs.DataRequest(dims=dims)))
        plan = Plan.preset(session.model.info, "W8A8")
        jobs.evaluate(session.engine, plan)
        out = Path(tmp) / "out.onnx"
        export = lambda: drain(jobs.export_model(session.engine, plan, out))  # noqa: E731
        before = sys.getswitchinterval()
        waits: dict[float, list[float]] = {0.005: [], WINDOW_SWITCH_S: []}
        try:
            for _ in range(args.reps):
                for interval, got in waits.items():
                    sys.setswitchinterval(interval)
                    got.extend(bursts_during(export, args.burst))
        finally:
            sys.setswitchinterval(before)
    print(
        f"{path.name}: {args.reps} exports per interval, a burst of {args.burst} lock entries "
        f"every {1000 * PERIOD_S:.0f} ms; load average {os.getloadavg()[0]:.1f}"
    )
    stats = {}
    for interval, got in waits.items():
        got.sort()
        stats[interval] = (statistics.median(got), got[int(0.99 * (len(got) - 1))], got[-1])
        med, p99, top = (1000 * x for x in stats[interval])
        print(
            f"  switch interval {1000 * interval:g} ms: {len(got)} bursts, lock wait per burst "
            f"median {med:.1f} ms, 99th percentile {p99:.1f}, longest {top:.1f}"
        )
    old, new = stats[0.005], stats[WINDOW_SWITCH_S]
    print(
        f"  window's interval / Python's: median {new[0] / old[0]:.2f}x, 99th percentile "
        f"{new[1] / old[1]:.2f}x, longest {new[2] / old[2]:.2f}x"
    )


if __name__ == "__main__":
    main()
