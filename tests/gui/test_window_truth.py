"""What the window says matches the data and the file: the status bar counts the samples
that calibrate and evaluate (feeds of one shape run batched, so runs are not what the user
gave); the Find Plan plot follows the theme and says its units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from PySide6.QtGui import QPalette

from bitlens.gui.jobs import DataRequest
from tests import builders
from tests.gui.conftest import OPEN_TIMEOUT_MS, wait_idle


def test_status_counts_samples_not_batched_runs(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(builders.dynamic_batch_mlp(), path)
    window.open_model(path)
    qtbot.waitUntil(lambda: window.document.is_open, timeout=OPEN_TIMEOUT_MS)
    if window.dims_dialog is not None:
        window.dims_dialog.reject()
    wait_idle(qtbot, window)
    rng = np.random.default_rng(0)
    data = tmp_path / "feeds.npz"  # eight numbered feeds of one row: two batched runs
    np.savez(data, **{f"x/{i}": rng.standard_normal((1, 16)).astype(np.float32)
                      for i in range(8)})  # fmt: skip
    window.controller.open_data(DataRequest("npz", path=data))
    qtbot.waitUntil(lambda: window.document.session.data is not None, timeout=OPEN_TIMEOUT_MS)
    wait_idle(qtbot, window)
    session = window.document.session
    assert len(session.data.calibration) == 1 and len(session.data.evaluation) == 1  # batched
    assert "Data: 4 calibrate, 4 evaluate (feeds.npz (8 feeds))" in window.status.data_label.text()


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
