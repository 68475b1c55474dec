"""A model's opening spreads the window's own work over event-loop passes (issue 11): the
open job lays out the graph, and the graph is built on a later pass than the one that
paints the new model's table and panes. The time itself is measured by
benchmarks/bench_ui_stall.py (docs/benchmarks.md "uiopen (session 15)")."""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QAbstractEventDispatcher
from PySide6.QtGui import QColor, QPalette

from bitlens.core import graph_layout
from bitlens.core.formats import parse_format
from bitlens.core.plan import LayerChoice, Plan
from bitlens.gui import jobs
from bitlens.gui.graph_geometry import LAYER_H, SLOT_W
from bitlens.gui.graph_ops import op_color
from bitlens.gui.jobs import DataRequest
from tests.gui.conftest import WAIT_MS, PaintLog, open_model, run_to_end, wait_idle


def test_the_open_job_lays_out_the_graph(qtbot, window, cnn_path: Path, monkeypatch) -> None:
    threads: list[threading.Thread] = []
    layout = graph_layout.layout_graph

    def recording(*a, **k):
        threads.append(threading.current_thread())
        return layout(*a, **k)

    monkeypatch.setattr(graph_layout, "layout_graph", recording)
    open_model(qtbot, window, cnn_path)
    view = window.graph.view
    assert "conv2" in view.node_names
    assert threads and threading.main_thread() not in threads  # not on the window's thread
    # the view draws the job's layout, which is the core's on the view's grid
    expected = graph_layout.layout_model(window.document.info, x_gap=SLOT_W, y_gap=LAYER_H)
    assert view.layout_result == expected
    for name, place in expected.nodes.items():
        pos = view.node_item(name).pos()
        assert (pos.x(), pos.y()) == (place.x, place.y)


def test_the_graph_is_built_a_pass_after_the_table_is_painted(
    qtbot, window, cnn_path: Path, mlp_path: Path
) -> None:
    open_model(qtbot, window, mlp_path)
    wait_idle(qtbot, window)
    session = run_to_end(jobs.open_model(cnn_path, DataRequest(dims={}), "cpu"))
    log: list[str] = []
    dispatcher = QAbstractEventDispatcher.instance()
    dispatcher.awake.connect(lambda: log.append("pass"))
    paints = PaintLog(log)
    window.table.view.viewport().installEventFilter(paints)
    view = window.graph.view
    view.rebuilt.connect(lambda: log.append("built"))
    window.document.load(session)  # as the open job's result handler does
    log.append("loaded")
    qtbot.waitUntil(lambda: "built" in log, timeout=WAIT_MS)
    window.table.view.viewport().removeEventFilter(paints)
    after = log[log.index("loaded") :]
    first_paint, built = after.index("paint"), after.index("built")
    # the table's repaint for the new model, then a new pass, then the graph
    assert first_paint < built and "pass" in after[first_paint:built], after


def test_graph_bounds_are_the_items_bounds(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    view = window.graph.view
    rect = view.graph_rect()
    assert not rect.isEmpty() and rect == view.scene().itemsBoundingRect()
    rect.adjust(0, 0, 100, 100)  # a copy: the caller's to change
    assert view.graph_rect() == view.scene().itemsBoundingRect()


def test_op_boxes_are_filled_by_their_op_type(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    view = window.graph.view
    ops = [view.node_item(n) for n in view.node_names]
    ops = [it for it in ops if not it.is_layer and not it.is_io]
    assert ops
    for palette in (view.palette(), QPalette(QColor(40, 40, 40))):  # light, then dark
        view.setPalette(palette)
        view._recolor()
        for item in ops:
            assert item.fill == op_color(item.title, view.palette()), item.name


def test_edits_build_each_preset_once(qtbot, window, cnn_path: Path, monkeypatch) -> None:
    open_model(qtbot, window, cnn_path)
    doc = window.document
    built: list[tuple[str, str | None]] = []
    preset = Plan.preset.__func__

    def counting(cls, info, name, layers=None, target=None):
        built.append((name, target))
        return preset(cls, info, name, layers, target)

    monkeypatch.setattr(Plan, "preset", classmethod(counting))
    w8a8 = preset(Plan, doc.info, "W8A8")
    doc.replace_plan(w8a8, "W8A8")
    assert window.table.preset_combo.currentText() == "W8A8"
    layer = doc.info.layers[0].name
    int4 = parse_format("int4 sym ch")
    doc.edit({layer: LayerChoice(weight=int4, activation=w8a8[layer].activation)}, "int4")
    assert window.table.preset_combo.currentIndex() == -1  # a mixed plan names no preset
    doc.undo_stack.undo()
    assert window.table.preset_combo.currentText() == "W8A8"
    assert len(built) == len(set(built))  # each (preset, target) built at most once
