"""The error and size plots' y-axis titles stay centred on their axes when their text
changes (a model opened, another metric, log sizes): pyqtgraph places an axis title only
when the axis is resized, so "1 − cos" kept the centre of the "dB" before it."""

from __future__ import annotations

from pathlib import Path

from tests.gui.conftest import open_model, wait_idle


def _centred(plot) -> bool:
    axis = plot.getAxis("left")
    # where pyqtgraph's AxisItem.resizeEvent puts a left axis's title: its middle (the
    # text turned 90 degrees) at the middle of the axis's height
    want = int(axis.size().height() / 2 + axis.label.boundingRect().width() / 2)
    return axis.label.isVisible() and axis.label.pos().y() == want


def test_axis_titles_stay_centred(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    plots = window.plots
    for plot in (plots.error_plot, plots.size_plot):
        assert _centred(plot), plot.getAxis("left").labelText
    plots.metric_box.setCurrentIndex(plots.metric_box.findData("cosine"))
    plots.size_scale.setCurrentIndex(plots.size_scale.findData(True))
    wait_idle(qtbot, window)
    assert plots.error_plot.getAxis("left").labelText == "1 − cos"
    assert plots.size_plot.getAxis("left").labelText == "B (log)"
    for plot in (plots.error_plot, plots.size_plot):
        assert _centred(plot), plot.getAxis("left").labelText
