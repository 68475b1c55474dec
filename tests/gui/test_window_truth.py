"""What the window says matches the data: the status bar counts the samples that calibrate
and evaluate (feeds of one shape run batched, so runs are not what the user gave), the
"weights only" note goes once data comes; the Find Plan plot follows the theme."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pyqtgraph as pg
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


def test_find_plan_plot_sizes_in_binary_units(qtbot) -> None:
    """File sizes on the scatter in KiB/MiB like every other size in the window (pyqtgraph's
    SI prefix drew a 51.5 MiB float model at 54 MB), the legend readable in the theme's text
    colour, and float's label clear of the legend."""
    from bitlens.core.model.loader import from_proto
    from bitlens.core.plan import Plan
    from bitlens.core.search import Point
    from bitlens.gui.search_plot import SearchPlot
    from tests import builders

    plot = SearchPlot()
    qtbot.addWidget(plot)
    plan = Plan(from_proto(builders.dynamic_batch_mlp()).info)
    mib = 1 << 20
    plot.add(Point(plan, 800 << 10, 800 << 10, 0.2, None, "W4A8"))  # 800 KiB: KiB at first
    assert plot.plot.getAxis("bottom").labelText.endswith("(KiB)")
    x, _ = plot.refs.getData()
    assert list(x) == [800.0]
    plot.add(Point(plan, 54_000_000, 54_000_000, 0.0, None, "float"))
    plot.add(Point(plan, 13 * mib, 13 * mib, 0.05, None, "W8A8"))
    plot.add(Point(plan, 7 * mib, 7 * mib, 0.08, None, "search"))
    assert plot.plot.getAxis("bottom").labelText.endswith("(MiB)")
    x, _ = plot.refs.getData()
    assert list(x) == [800 / 1024, 13.0]  # earlier points redrawn in the new unit
    assert plot.float_line.value() == 54_000_000 / mib
    assert list(plot.tried.getData()[0]) == [7.0]
    assert [t.pos().x() for t in plot._labels] == [800 / 1024, 13.0]
    text = plot.palette().color(QPalette.ColorRole.Text).name()
    legend = plot.plot.getPlotItem().legend
    assert [pg.mkColor(label.opts["color"]).name() for _s, label in legend.items] == [text] * 3
    assert plot.float_line.label.orthoPos < 0.5  # low: the legend is at the top right


def test_running_job_keeps_room_in_the_status_bar(qtbot) -> None:
    """At 1280 px the long output and data lines left a running search's step "refe…"."""
    from PySide6.QtWidgets import QApplication

    from bitlens.gui.status_panel import StatusPanel

    panel = StatusPanel()
    qtbot.addWidget(panel)
    panel.resize(1280, 30)
    panel.size_label.setText("Weights 51.5 MiB → 13.0 MiB (3.98×)")
    panel.bits_label.setText("8.05 bits/weight")
    panel.output_label.setText("output 387: 27.1 dB · cos 0.9990 · +2 more outputs and more")
    panel.data_label.setText("Data: 8 calibrate, 8 evaluate (ocr.npz (16 feeds)) and more")
    panel.providers_label.setText("ORT: CPU")
    panel.show()
    panel.set_busy("reference W4A8 of the plan search", quiet=False, cancellable=True)
    qtbot.waitUntil(lambda: panel.progress.isVisible())
    QApplication.processEvents()  # the layout takes the new minimum
    assert panel.job_label.shown_text().startswith("reference W4A8 of the")
    panel.set_idle()
    assert panel.job_label.minimumWidth() == 0
