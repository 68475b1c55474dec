"""The window thread's own CPU time per event-loop pass while a model opens and its W8A8
plan is evaluated: the UI row's (issue 11) work, apart from the CPUs' load.

bench_ui_stall.py measures the event loop's gaps in wall time, which under load mostly
say how long the window's thread waited for a CPU. This one turns the loop the way it does
(``processEvents``, a 2 ms sleep) and times each pass with ``time.thread_time`` on the
window's thread: the work a quiet machine would see as a stall. Each open after the first
replaces an open model (its graph cleared), as File > Open does.

A gap of the event loop can hold more than one pass: Qt delivers posted events (a job's
result, a repaint) before timers, so a pass that handles a result and the next one that
paints what it changed run with no timer between them. A 5 ms timer stands for the
window's other work (bench_ui_stall.py's watchdog does the same); the longest stretch of
the window thread's CPU between two of its ticks is printed per run as "gaps".

Run: ``QT_QPA_PLATFORM=offscreen PYTHONPATH=app python benchmarks/bench_ui_passes.py
[MODEL.onnx] [--dim NAME=SIZE] [--opens N]`` (the generated CRNN-like recognizer by default)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

import onnx
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import crnn
from bitlens.core.plan import Plan
from bitlens.gui.jobs import DataRequest
from bitlens.gui.main_window import MainWindow

SHOWN = 4  # the longest passes printed per run
OVER_MS = 5.0  # passes counted in the sum


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--dim", action="append", default=[])
    ap.add_argument("--opens", type=int, default=3)
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    app = QApplication.instance() or QApplication(sys.argv[:1])
    win = MainWindow(device="cpu")
    win.resize(1280, 720)
    win.show()

    ticks: list[float] = []
    tick = QTimer()
    tick.timeout.connect(lambda: ticks.append(time.thread_time()))
    tick.start(5)
    gaps: dict[str, list[float]] = {"open": [], "W8A8 evaluation": []}

    def passes(phase: str | None = None) -> list[float]:
        """Each pass's CPU on this thread (ms), until the runner has been idle 50 passes;
        the phase's longest CPU between two timer ticks goes to ``gaps``."""
        out, quiet = [], 0
        ticks[:] = [time.thread_time()]
        while quiet < 50:
            t = time.thread_time()
            app.processEvents()
            out.append(1000 * (time.thread_time() - t))
            time.sleep(0.002)
            quiet = 0 if win.runner.busy else quiet + 1
        if phase is not None:
            gaps[phase].append(1000 * max(b - a for a, b in pairwise(ticks)))
        return sorted(out, reverse=True)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.model) if args.model else Path(tmp) / "crnn.onnx"
        if not args.model:
            onnx.save(crnn(), path)
            dims = dims or {"N": 1}
        passes()  # the window's first paint
        runs: dict[str, list[list[float]]] = {"open": [], "W8A8 evaluation": []}
        for _ in range(args.opens):
            win.controller.open_model(path, DataRequest(dims=dims))
            runs["open"].append(passes("open"))
            doc = win.document
            doc.replace_plan(Plan.preset(doc.info, "W8A8"), "W8A8")
            runs["W8A8 evaluation"].append(passes("W8A8 evaluation"))
    for phase, rows in runs.items():
        longest = "; ".join(" ".join(f"{x:.0f}" for x in r[:SHOWN]) for r in rows)
        total = " ".join(f"{sum(x for x in r if x > OVER_MS):.0f}" for r in rows)
        gap = " ".join(f"{x:.0f}" for x in gaps[phase])
        print(f"{phase}: longest passes, ms of the window thread's CPU, per run: {longest}"
              f" | all passes over {OVER_MS:g} ms: {total} | gaps: {gap}")  # fmt: skip
    doc.undo_stack.setClean()  # the plan edits are the bench's: closing asks nothing
    win.close()


if __name__ == "__main__":
    main()
