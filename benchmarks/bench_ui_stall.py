"""The window's event loop while a model opens, evaluates and sweeps: the longest gap.

A 5 ms QTimer records when the event loop gets to run; a gap is the time between two
ticks (target: none over 100 ms while anything runs, issue 11). Offscreen, on a model
file with random data, or on the generated CRNN-like recognizer by default.

On Linux the longest gap is split with the UI thread's scheduler statistics
(``/proc/self/task/TID/schedstat``: time on a CPU, time runnable but waiting for one):
"ran" is the window's own work on the UI thread, "CPU wait" is time the machine gave to
other processes, and the rest the thread slept: waiting for the GIL while a worker holds
it (ORT holds it while a session initializes, microsoft/onnxruntime#27063; a worker
preempted by the OS holds it until it runs again) or idle between ticks.

Run: ``PYTHONPATH=app QT_QPA_PLATFORM=offscreen python benchmarks/bench_ui_stall.py
[MODEL.onnx] [--dim NAME=SIZE] [--switch-ms MS]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import onnx
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import crnn
from bitlens.gui.jobs import DataRequest
from bitlens.gui.main_window import MainWindow


def _schedstat() -> tuple[float, float] | None:
    """The calling thread's (seconds on a CPU, seconds waiting for one); None off Linux."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            ran, waited = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    return int(ran) / 1e9, int(waited) / 1e9


def table_cpu(win: MainWindow, repeats: int = 15) -> tuple[float, float]:
    """The window's thread's CPU seconds (best of ``repeats``) to fit the layer table's columns
    and to paint the table: Python's share of each is the model's data() calls."""
    table, fit, paint = win.table, float("inf"), float("inf")
    for _ in range(repeats):
        t = time.thread_time()
        table._fit_columns()
        fit = min(fit, time.thread_time() - t)
        t = time.thread_time()
        table.view.viewport().grab()
        paint = min(paint, time.thread_time() - t)
    return fit, paint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--dim", action="append", default=[])
    ap.add_argument(
        "--switch-ms", type=float, help="sys.setswitchinterval in ms (Python's default: 5)"
    )
    args = ap.parse_args()
    if args.switch_ms is not None:
        sys.setswitchinterval(args.switch_ms / 1000)
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    app = QApplication.instance() or QApplication(sys.argv[:1])
    win = MainWindow(device="cpu")
    win.show()
    gaps: dict[str, tuple[float, tuple[float, float] | None]] = {}  # gap, (ran, CPU wait)
    last = [time.perf_counter()]
    sched = [_schedstat()]
    phase = ["idle"]

    def tick() -> None:
        now, st = time.perf_counter(), _schedstat()
        split = (
            None if st is None or sched[0] is None else (st[0] - sched[0][0], st[1] - sched[0][1])
        )
        if now - last[0] > gaps.get(phase[0], (0.0, None))[0]:
            gaps[phase[0]] = (now - last[0], split)
        last[0], sched[0] = now, st

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(5)

    def run_until_idle(limit_s: float) -> None:
        end = time.time() + limit_s
        quiet = 0
        while time.time() < end and quiet < 50:
            app.processEvents()
            time.sleep(0.002)
            quiet = 0 if win.runner.busy else quiet + 1

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else Path(tmp) / "crnn.onnx"
        if not args.model:
            onnx.save(crnn(), path)
            dims = dims or {"N": 1}
        phase[0] = "open + calibrate + first evaluation"
        last[0], sched[0] = time.perf_counter(), _schedstat()
        win.controller.open_model(path, DataRequest(dims=dims))
        t0 = time.perf_counter()
        run_until_idle(600)
        opened = time.perf_counter() - t0
        fit, paint = table_cpu(win)
        phase[0] = "sweep"
        last[0], sched[0] = time.perf_counter(), _schedstat()
        win.controller.run_sweep(["int8 sym ch", "int4 sym ch"])
        t0 = time.perf_counter()
        run_until_idle(600)
        swept = time.perf_counter() - t0
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, "
        f"GIL switch interval {1000 * sys.getswitchinterval():g} ms, open {opened:.1f} s, "
        f"sweep {swept:.1f} s"
    )
    for what, (gap, split) in gaps.items():
        line = f"{what:36s}: longest event-loop gap {1000 * gap:4.0f} ms (target <= 100 ms)"
        if split is not None:
            ran, waited = split
            line += (
                f"; UI thread ran {1000 * ran:.0f} ms, waited {1000 * waited:.0f} ms for a CPU,"
                f" slept {1000 * max(gap - ran - waited, 0.0):.0f} ms"
            )
        print(line)
    print(
        f"layer table ({win.table.model.rowCount()} rows): fitting its columns {1000 * fit:.1f}"
        f" ms, painting it {1000 * paint:.1f} ms of the UI thread's CPU (best of 15)"
    )
    win.close()


if __name__ == "__main__":
    main()
