"""What the window says matches the data: the status bar counts the samples that calibrate
and evaluate (feeds of one shape run batched, so runs are not what the user gave), the
"weights only" note goes once data comes; the Find Plan plot follows the theme."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from PySide6.QtGui import QPalette

from bitlens.gui.jobs import DataRequest
from tests.core.data_models import ocr_line
from tests.gui.conftest import OPEN_TIMEOUT_MS, wait_idle


def test_status_counts_samples_not_batched_runs(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "line.onnx"
    onnx.save(ocr_line(batch=None, width=None), path)  # x: [?, 1, 8, ?]: sizes are asked
    window.open_model(path)
    qtbot.waitUntil(lambda: window.dims_dialog is not None and window.dims_dialog.isVisible(),
                    timeout=OPEN_TIMEOUT_MS)  # fmt: skip
    window.dims_dialog.reject()  # declined: the window says it shows weights only
    wait_idle(qtbot, window)
    assert window.message_bar.isVisible() and "Weights only" in window.message_bar.text.text()
    rng = np.random.default_rng(0)
    data = tmp_path / "feeds.npz"  # eight numbered feeds of one row: two batched runs
    np.savez(data, **{f"x/{i}": rng.standard_normal((1, 1, 8, 12)).astype(np.float32)
                      for i in range(8)})  # fmt: skip
    window.controller.open_data(DataRequest("npz", path=data))
    qtbot.waitUntil(lambda: window.document.session.data is not None, timeout=OPEN_TIMEOUT_MS)
    wait_idle(qtbot, window)
    session = window.document.session
    assert len(session.data.calibration) == 1 and len(session.data.evaluation) == 1  # batched
    assert "Data: 4 calibrate, 4 evaluate (feeds.npz (8 feeds))" in window.status.data_label.text()
    assert not window.message_bar.isVisible()  # it no longer says "weights only"


def test_find_plan_plot_follows_the_theme(qtbot, window) -> None:
    """The search's scatter was drawn black on the light theme (pyqtgraph's default), the
    one dark pane of the window, with its y label cut off at 1280x720."""
    from PySide6.QtWidgets import QApplication

    plot = window.search.plot
    try:
        for theme in ("light", "dark"):
            window.set_theme(theme)
            QApplication.processEvents()
            base = plot.palette().color(QPalette.ColorRole.Base)
            assert plot.plot.backgroundBrush().color() == base, theme
            text = plot.palette().color(QPalette.ColorRole.Text)
            assert plot.plot.getPlotItem().getAxis("left").textPen().color() == text, theme
    finally:
        window.set_theme("system")
    label = plot.plot.getPlotItem().getAxis("left").labelText
    assert len(label) <= 16, label  # fits the panel's short plot at 1280x720
