"""The window's event loop while a model opens, evaluates and sweeps: the longest gap.

A 5 ms QTimer records when the event loop gets to run; a gap is the time between two
ticks (target: none over 100 ms while anything runs, issue 11). Offscreen, on a model
file with random data, or on the generated CRNN-like recognizer by default.

Run: ``PYTHONPATH=app QT_QPA_PLATFORM=offscreen python benchmarks/bench_ui_stall.py
[MODEL.onnx] [--dim NAME=SIZE]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import onnx
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import crnn
from bitlens.gui.jobs import DataRequest
from bitlens.gui.main_window import MainWindow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--dim", action="append", default=[])
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    app = QApplication.instance() or QApplication(sys.argv[:1])
    win = MainWindow(device="cpu")
    win.show()
    gaps: dict[str, float] = {}
    last = [time.perf_counter()]
    phase = ["idle"]

    def tick() -> None:
        now = time.perf_counter()
        gaps[phase[0]] = max(gaps.get(phase[0], 0.0), now - last[0])
        last[0] = now

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
        last[0] = time.perf_counter()
        win.controller.open_model(path, DataRequest(dims=dims))
        run_until_idle(600)
        phase[0] = "sweep"
        last[0] = time.perf_counter()
        win.controller.run_sweep(["int8 sym ch", "int4 sym ch"])
        run_until_idle(600)
    for what, gap in gaps.items():
        print(f"{what:40s}: longest event-loop gap {1000 * gap:6.0f} ms (target <= 100 ms)")
    win.close()


if __name__ == "__main__":
    main()
