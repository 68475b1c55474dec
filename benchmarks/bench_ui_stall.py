"""The window's event loop while a model opens, evaluates, sweeps, searches and exports.

Target (issue 11): no event-loop gap over 100 ms while anything runs. Offscreen, on a model
file with random data, or on the generated CRNN-like recognizer by default. In order: open
(the float plan, calibration and its first evaluation), the W8A8 plan's evaluation, one
layer's weight format changed, a sweep of every layer in two formats, Find Plan with the
search pane's default budget (stopped after ``--search-s`` seconds) and an export of the
W8A8 plan with its fidelity check.

Each gap over 50 ms is told apart (``stall_watch.py``): the UI thread's own CPU time in it,
its time waiting for a CPU, the time it slept (the GIL held by a worker, or idle), the
process's CPU in it, and where a watchdog found the UI thread's Python stack, so a row tells
the window's own work from a starved process.

Run: ``PYTHONPATH=app QT_QPA_PLATFORM=offscreen python benchmarks/bench_ui_stall.py
[MODEL.onnx] [--dim NAME=SIZE] [--switch-ms MS] [--search-s S] [--only PHASE ...]``
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import onnx
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import crnn
from bitlens.core.formats import parse_format
from bitlens.core.plan import Plan
from bitlens.gui import thread_priority
from bitlens.gui.jobs import DataRequest
from bitlens.gui.main_window import MainWindow
from stall_watch import StallWatch

PHASES = ("open", "W8A8 evaluation", "one layer changed", "sweep", "Find Plan", "export")


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


def niced() -> str:
    """How many of the process's threads run above its nice value (Linux), of all."""
    try:
        tasks = list(Path("/proc/self/task").iterdir())
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())
        raised = sum(os.getpriority(os.PRIO_PROCESS, int(t.name)) > base for t in tasks)
    except (OSError, ValueError):
        return "threads unknown"
    return f"{raised} of {len(tasks)} threads raised"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--dim", action="append", default=[])
    ap.add_argument(
        "--switch-ms", type=float, help="sys.setswitchinterval in ms (Python's default: 5)"
    )
    ap.add_argument("--search-s", type=float, default=60.0, help="stop Find Plan after this")
    ap.add_argument(
        "--profile-ui", metavar="FILE",
        help="profile the UI thread's CPU time (cProfile) and write its stats to FILE",
    )  # fmt: skip
    ap.add_argument(
        "--same-priority", action="store_true",
        help="run jobs at the window's priority (gui/thread_priority.py off), to compare",
    )  # fmt: skip
    ap.add_argument(
        "--callbacks", action="store_true",
        help="time each Python callback Qt makes on the UI thread (a profile hook: slower)",
    )  # fmt: skip
    ap.add_argument(
        "--only", action="append", choices=PHASES[1:],
        help="run only these phases after the open (repeatable)",
    )  # fmt: skip
    args = ap.parse_args()
    thread_priority.ENABLED = thread_priority.ENABLED and not args.same_priority
    if args.switch_ms is not None:
        sys.setswitchinterval(args.switch_ms / 1000)
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    wanted = ["open", *(args.only or PHASES[1:])]
    app = QApplication.instance() or QApplication(sys.argv[:1])
    win = MainWindow(device="cpu")
    win.show()
    ctl, doc = win.controller, win.document
    watch = StallWatch(lambda: "" if win.runner.running is None else win.runner.running.label)
    timer = QTimer()
    timer.timeout.connect(watch.tick)
    timer.start(5)
    watch.start()
    if args.callbacks:
        watch.trace_callbacks("run_until_idle")
    # the UI thread's CPU time only: a worker's time is not the window's (cProfile profiles
    # the thread that enables it)
    profile = cProfile.Profile(time.thread_time) if args.profile_ui else None
    if profile is not None:
        profile.enable()
    took: dict[str, float] = {}

    def run_until_idle(limit_s: float) -> bool:
        """Turn the event loop until the runner is idle; False when ``limit_s`` passed."""
        end = time.perf_counter() + limit_s
        quiet = 0
        while quiet < 50:
            if time.perf_counter() > end:
                return False
            app.processEvents()
            time.sleep(0.002)
            quiet = 0 if win.runner.busy else quiet + 1
        return True

    def phase(name: str, start, limit_s: float = 900.0) -> None:
        if name not in wanted:
            return
        watch.phase = name
        watch.restart()
        t0 = time.perf_counter()
        start()
        if not run_until_idle(limit_s):
            win.controller.cancel()
            run_until_idle(900.0)
        took[name] = time.perf_counter() - t0
        watch.phase = "idle"

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else Path(tmp) / "crnn.onnx"
        if not args.model:
            onnx.save(crnn(), path)
            dims = dims or {"N": 1}
        phase("open", lambda: ctl.open_model(path, DataRequest(dims=dims)))
        fit, paint = table_cpu(win)
        info = doc.info
        w8a8 = Plan.preset(info, "W8A8")
        middle = info.layers[len(info.layers) // 2].name
        phase("W8A8 evaluation", lambda: doc.replace_plan(w8a8, "W8A8"))
        phase(
            "one layer changed",
            lambda: doc.edit(
                {middle: dataclasses.replace(w8a8[middle], weight=parse_format("int4 sym ch"))},
                "int4",
            ),
        )
        phase("sweep", lambda: ctl.run_sweep(["int8 sym ch", "int4 sym ch"]))

        def find_plan() -> None:
            win.act_find_plan.trigger()
            win.search.request_run()

        phase("Find Plan", find_plan, args.search_s)
        phase("export", lambda: doc.replace_plan(w8a8, "W8A8") or ctl.export_model(
            Path(tmp) / "out.onnx"))  # fmt: skip
    watch.stop()
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.profile_ui)
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, jobs "
        + (f"at nice +{thread_priority.WORKER_NICE}" if thread_priority.ENABLED else "not niced")
        + f" ({niced()}), "
        f"GIL switch interval {1000 * sys.getswitchinterval():g} ms; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
    )
    print(
        "garbage collection, seconds by thread: "
        + ", ".join(f"{k} {v:.2f}" for k, v in watch.gc_total.most_common())
    )
    for line in watch.report([p for p in PHASES if p in took]):
        print(line)
    print(
        f"layer table ({win.table.model.rowCount()} rows): fitting its columns {1000 * fit:.1f}"
        f" ms, painting it {1000 * paint:.1f} ms of the UI thread's CPU (best of 15)"
    )
    doc.undo_stack.setClean()  # the plan edits are the bench's: closing asks nothing
    win.close()


if __name__ == "__main__":
    main()
