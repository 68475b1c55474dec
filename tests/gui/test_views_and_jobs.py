"""Linked selection, layer detail, sweep with cancel, closing with work running."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt, QThreadPool

from bitlens.gui import jobs
from bitlens.gui.layer_table_model import NAME_ROLE
from tests.gui.conftest import (
    WAIT_MS,
    click_row,
    held,
    open_model,
    slowed,
    wait_detail,
    wait_idle,
)


def _slowed_sweep(monkeypatch: pytest.MonkeyPatch, delay: float = 0.05) -> None:
    """Make the real sweep pause after each layer, so a test can act while it runs."""
    monkeypatch.setattr(jobs, "sweep", slowed(jobs.sweep, delay))


def _click_node(qtbot, window, name: str, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    view = window.graph.view
    item = view.node_item(name)
    view.centerOn(item)
    pos = view.mapFromScene(item.sceneBoundingRect().center())
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, modifier, pos)


def _selected_rows(window) -> list[str]:
    rows = window.table.view.selectionModel().selectedRows()
    return sorted(r.data(NAME_ROLE) for r in rows)


def test_graph_click_selects_in_table_plots_and_detail(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    _click_node(qtbot, window, "conv2")
    assert window.document.selection.names == ("conv2",)
    assert _selected_rows(window) == ["conv2"]
    assert window.graph.view.node_item("conv2").highlighted
    assert window.plots.marks[0].isVisible() and window.plots.marks[0].value() == 1
    qtbot.waitUntil(  # opening selected conv1: wait for conv2's detail to replace it
        lambda: window.detail.detail is not None
        and window.detail.detail.layer == "conv2"
        and window.detail.detail.complete,
        timeout=WAIT_MS,
    )
    detail = window.detail.detail
    assert detail.weights is not None and detail.weights.counts.sum() == 16 * 8 * 3 * 3
    assert detail.activation is not None  # the captured float input of conv2
    assert window.detail.sandbox.rowCount() == len(detail.schemes) > 10
    # ctrl-click adds a layer; clicking a non-layer node (relu) changes nothing
    _click_node(qtbot, window, "fc", Qt.KeyboardModifier.ControlModifier)
    assert _selected_rows(window) == ["conv2", "fc"]
    _click_node(qtbot, window, "relu1")
    assert _selected_rows(window) == ["conv2", "fc"]


def test_table_selection_reaches_graph_and_plot_click_selects(qtbot, window, cnn_path) -> None:
    open_model(qtbot, window, cnn_path)
    click_row(qtbot, window, 0)
    assert window.document.selection.names == ("conv1",)
    assert window.graph.view.node_item("conv1").highlighted
    assert not window.graph.view.node_item("conv2").highlighted
    plots = window.plots
    vb = plots.error_plot.vb
    scene_pos = vb.mapViewToScene(QPointF(2.0, 1.0))
    assert plots.layer_at_scene(scene_pos) == "fc"
    # a real click on the bar column of layer 2 selects it everywhere
    view_pos = plots.canvas.mapFromScene(scene_pos)
    qtbot.mouseClick(plots.canvas.viewport(), Qt.MouseButton.LeftButton, pos=view_pos)
    assert window.document.selection.names == ("fc",)
    assert _selected_rows(window) == ["fc"]
    assert "fc" in plots.info.text()


def test_sandbox_pick_applies_format(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    window.document.selection.set(["fc"])
    wait_detail(qtbot, window, "fc")
    schemes = window.detail.detail.schemes
    row = next(i for i, s in enumerate(schemes) if s.format == "int4 sym ch")
    window.detail.sandbox.cellDoubleClicked.emit(row, 0)
    wait_idle(qtbot, window)
    assert window.document.plan["fc"].weight.name == "int4 sym ch"
    # the detail follows the plan: the histogram now shows the int4 grid
    qtbot.waitUntil(
        lambda: window.detail.detail.weights is not None
        and window.detail.detail.weights.fmt == "int4 sym ch0",
        timeout=WAIT_MS,
    )
    levels = window.detail.detail.weights.levels
    assert levels.size == 16  # int4 codes -8..7
    steps = np.diff(levels)
    assert np.allclose(steps, steps[0], rtol=1e-5)


def test_sweep_runs_to_completion(qtbot, window, mlp_path: Path) -> None:
    open_model(qtbot, window, mlp_path)
    with qtbot.waitSignal(window.controller.sweepFinished, timeout=WAIT_MS) as blocker:
        window.controller.run_sweep(["int4 sym ch", "int8 sym ch"])
    entries = blocker.args[0]
    assert len(entries) == 3 * 2
    assert window.sweep.table.rowCount() == 6
    worst = entries[0]
    assert worst.layer == "mm_b" and worst.format == "int4 sym ch"  # the fragile layer
    wait_idle(qtbot, window)


def test_sweep_cancel_stops_it(qtbot, window, mlp_path: Path, monkeypatch) -> None:
    sweep, release = held(jobs.sweep)  # held after its first step until Cancel was sent
    monkeypatch.setattr(jobs, "sweep", sweep)
    open_model(qtbot, window, mlp_path)
    finished = []
    window.controller.sweepFinished.connect(finished.append)
    with qtbot.waitSignal(window.runner.progressed, timeout=WAIT_MS):
        window.controller.run_sweep(["int4 sym ch"])
    assert window.status.cancel_button.isVisible()
    with qtbot.waitSignal(window.runner.cancelled, timeout=WAIT_MS):
        window.status.cancel_button.click()
        release.set()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=WAIT_MS)
    assert finished == []
    assert "Cancelled" in window.message_bar.text.text()
    assert not window.status.cancel_button.isVisible()
    # the engine is still usable after the cancelled job
    window.document.edit({}, "nothing")
    model = window.table.model
    model.setData(model.index(0, 4), "int8 sym ch")
    wait_idle(qtbot, window)
    assert window.document.evaluation.layers["mm_a"].weight is not None


def test_newer_evaluation_supersedes_older(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    model = window.table.model
    for fmt in ("int8 sym ch", "int4 sym ch", "int2 sym ch", "tern ch"):
        model.setData(model.index(model.row_of("conv2"), 4), fmt)
    wait_idle(qtbot, window)
    assert window.document.evaluation.layers["conv2"].weight_format == "tern ch"
    assert window.document.undo_stack.count() == 4


def test_close_with_sweep_running(qtbot, settings, mlp_path: Path, monkeypatch, no_modal) -> None:
    from bitlens.gui.main_window import MainWindow

    _slowed_sweep(monkeypatch, delay=0.2)
    w = MainWindow(settings, device="cpu")
    qtbot.addWidget(w)
    w.show()
    open_model(qtbot, w, mlp_path)
    with qtbot.waitSignal(w.runner.progressed, timeout=WAIT_MS):
        w.controller.run_sweep(["int4 sym ch", "int2 sym ch"])
    assert w.runner.busy
    assert w.close()
    # closing quit the worker and waited for it: nothing is left running
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    assert not w.runner.busy


def test_per_channel_activation_in_table_and_detail(qtbot, window, cnn_path: Path) -> None:
    from bitlens.core.plan import LayerChoice

    open_model(qtbot, window, cnn_path)
    window.document.edit({"conv2": LayerChoice.of("int8 sym ch", "uint8 asym ch")}, "per channel")
    wait_idle(qtbot, window)
    ev = window.document.evaluation
    assert ev.layers["conv2"].activation_format == "uint8 asym ch"
    window.document.selection.set(["conv2"])
    qtbot.waitUntil(
        lambda: window.detail.detail is not None
        and window.detail.detail.layer == "conv2"
        and window.detail.detail.activation is not None
        and window.detail.detail.activation.fmt == "uint8 asym ch1",
        timeout=WAIT_MS,
    )
    assert window.detail.detail.activation.group.startswith("channel ")


def test_sweep_heat_map_states_its_baseline_and_applies_a_cell(
    qtbot, window, mlp_path: Path
) -> None:
    from bitlens.gui.sweep_dialog import SweepDialog

    open_model(qtbot, window, mlp_path)
    names = window.document.info.layer_names
    dlg = SweepDialog([names[0]], window, n_layers=len(names), n_samples=8)
    qtbot.addWidget(dlg)
    assert dlg.all_layers.isChecked()  # one selected layer: sweep them all
    formats, layers = dlg.choice()
    assert layers is None
    assert dlg.runs() == len(names) * (len(formats) + len(dlg.activation_formats()))
    assert f"= {dlg.runs()} runs" in dlg.estimate.text() and "8 evaluation" in dlg.estimate.text()
    with qtbot.waitSignal(window.controller.sweepFinished, timeout=WAIT_MS):
        window.controller.run_sweep(["int4 sym ch", "int8 sym ch"])
    heat = window.sweep.heat
    assert heat.rowCount() == len(names) and heat.columnCount() == 2
    assert [heat.verticalHeaderItem(r).text() for r in range(heat.rowCount())] == list(names)
    assert "Baseline: the float model" in window.sweep.note.text()
    # columns by size, most bytes first, whatever order the results came in
    assert [heat.horizontalHeaderItem(c).text() for c in range(2)] == ["int8 sym ch", "int4 sym ch"]
    row = names.index("mm_b")
    assert heat.item(row, 0).background().color() != heat.item(row, 1).background().color()
    heat.cellClicked.emit(row, 1)
    assert window.document.selection.current == "mm_b"
    heat.cellDoubleClicked.emit(row, 1)
    wait_idle(qtbot, window)
    assert window.document.plan["mm_b"].weight.name == "int4 sym ch"
