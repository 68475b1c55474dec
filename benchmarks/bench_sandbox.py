"""The layer-detail sandbox on a big layer: time to a settled window, and per-format cost.

Opens a model in the window (offscreen) with random data and waits until no job is left;
prints when the selected layer's sandbox showed its first row and its last, the longest
event-loop gap (a 5 ms QTimer; target <= 100 ms while anything runs, issue 11), then the
per-format cost of the sandbox on that layer, and the k-means fit of all channels at once
against the one-channel-at-a-time reference on the same rows (a ratio from this run).

Run: ``PYTHONPATH=app QT_QPA_PLATFORM=offscreen python benchmarks/bench_sandbox.py
MODEL.onnx [--dim NAME=SIZE] [--rows N]`` (e.g. paraphrase-MiniLM-L3-v2 from the
real-model suite, tests/real/wheels.py, with ``--dim batch_size=1 --dim sequence_length=16``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from bitlens.core.formats import lut, parse_format
from bitlens.core.formats.groups import Grouping
from bitlens.gui.jobs import DataRequest
from bitlens.gui.main_window import MainWindow


def settle(path: Path, dims: dict[str, int]) -> str:
    """Open ``path`` in the window; returns the selected layer's name."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    win = MainWindow(device="cpu")
    win.show()
    gap, last, during = [0.0], [time.perf_counter()], [""]

    def tick() -> None:
        now = time.perf_counter()
        if now - last[0] > gap[0]:
            job = win.runner.running
            gap[0], during[0] = now - last[0], job.label if job else "no job"
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(5)
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    win.controller.open_model(path, DataRequest(dims=dims))
    quiet = 0
    while quiet < 50 and time.perf_counter() - t0 < 900:
        app.processEvents()
        time.sleep(0.002)
        d = win.detail.detail
        now = time.perf_counter() - t0
        if d is not None and d.schemes and "first row" not in marks:
            marks["first row"] = now
        if d is not None and d.complete and "complete" not in marks:
            marks["complete"] = now
        quiet = 0 if win.runner.busy else quiet + 1
    marks["idle"] = time.perf_counter() - t0
    layer = win.detail.detail.layer if win.detail.detail else ""
    print(f"selected layer: {layer}")
    for what, t in marks.items():
        print(f"  {what:12s} {t:7.2f} s after open")
    print(
        f"  longest event-loop gap {1000 * gap[0]:.0f} ms (target <= 100 ms), "
        f"ending while: {during[0]}"
    )
    timer.stop()
    win.close()
    return layer


def per_format(path: Path, layer: str) -> None:
    from bitlens.core.engine import Engine
    from bitlens.core.model.loader import load_model
    from bitlens.core.plan import weight_choices

    engine = Engine(load_model(path), None)
    lay = engine.info.layer(layer)
    total = 0.0
    print(f"per-format sandbox cost on {layer} {[list(w.shape) for w in lay.weights]}:")
    for f in weight_choices(lay):
        t = time.perf_counter()
        engine.scheme_table(layer, [f])
        dt = time.perf_counter() - t
        total += dt
        print(f"  {f:18s} {dt:6.2f} s")
    print(f"  {'all':18s} {total:6.2f} s")


def kmeans_ratio(path: Path, layer: str, rows: int) -> None:
    from bitlens.core.engine import bind
    from bitlens.core.formats import lut_rows
    from bitlens.core.model.loader import load_model

    lm = load_model(path)
    w = lm.info.layer(layer).weights[0]
    for name in ("km4 ch", "km2 ch"):
        fmt = bind(parse_format(name), w)  # the channel axis the engine would use
        g = Grouping.of(fmt, tuple(w.shape)).groups(lm.weight(w).astype(np.float64))[:rows]
        k = 2**fmt.bits
        t = time.perf_counter()
        ref = np.stack([lut.kmeans_1d(r, k) for r in g])
        ref_codes = np.stack([lut.nearest(r, b) for r, b in zip(g, ref, strict=True)])
        t_one = time.perf_counter() - t
        t = time.perf_counter()
        books, codes = lut_rows.kmeans_rows(g, k)
        t_all = time.perf_counter() - t
        same = np.array_equal(books.view(np.uint32), ref.view(np.uint32)) and np.array_equal(
            codes, ref_codes
        )
        print(
            f"{name} on {len(g)} channels: one at a time {t_one:.2f} s, all at once "
            f"{t_all:.2f} s ({t_one / t_all:.1f}x), identical: {same}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--dim", action="append", default=[])
    ap.add_argument("--rows", type=int, default=3000, help="channels for the k-means ratio")
    ap.add_argument("--no-window", action="store_true", help="only the per-format costs")
    ap.add_argument("--window-only", action="store_true", help="only the time to settle")
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    path = Path(args.model)
    if args.no_window:
        from bitlens.core.model.loader import load_model

        info = load_model(path).info
        layer = max(info.layers, key=lambda lay: lay.nbytes).name
    else:
        layer = settle(path, dims)
        if args.window_only:
            return
    per_format(path, layer)
    kmeans_ratio(path, layer, args.rows)


if __name__ == "__main__":
    main()
