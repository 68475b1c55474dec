"""The graph view on real-sized graphs: level of detail, fit, find box, properties pane,
minimap and zoom to selection (issue 15, item 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from bitlens.core.plan import Plan
from bitlens.gui.graph_view import FIRST_VIEW_MIN, SELECTION_ZOOM
from tests.builders import weights
from tests.core.engine_models import small_cnn
from tests.gui.conftest import WAIT_MS, open_model, wait_idle

BLOCKS = 24  # 24 x (MatMul + 9 Relu) = 240 nodes in one long chain


@pytest.fixture
def chain_path(tmp_path: Path) -> Path:
    """x[N,8] -> (MatMul(W_i) -> Relu x 9) x BLOCKS -> y: a long, narrow graph like a
    converted ResNet's, drawn hundreds of rows tall."""
    nodes, inits, prev = [], [], "x"
    for b in range(BLOCKS):
        inits.append(numpy_helper.from_array(weights((8, 8), seed=b), f"W{b}"))
        nodes.append(helper.make_node("MatMul", [prev, f"W{b}"], [f"m{b}"], name=f"mm{b}"))
        prev = f"m{b}"
        for r in range(9):
            nodes.append(helper.make_node("Relu", [prev], [f"r{b}_{r}"], name=f"relu{b}_{r}"))
            prev = f"r{b}_{r}"
    nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
    g = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    p = tmp_path / "chain.onnx"
    onnx.save(m, p)
    return p


def _contains(outer, inner) -> bool:
    return outer.adjusted(-1, -1, 1, 1).contains(inner)


def test_fit_shows_the_whole_of_a_long_graph(qtbot, window, chain_path: Path) -> None:
    open_model(qtbot, window, chain_path)
    view = window.graph.view
    assert len(view.node_names) == BLOCKS * 10 + 3  # + model input, Identity, output
    # opened at a scale where op types are legible, the top of the graph in view
    assert view.scale_factor >= FIRST_VIEW_MIN
    assert view.visible_rect().contains(view.node_item("input:x").sceneBoundingRect())
    window.graph.buttons["fit"].click()
    QApplication.processEvents()
    for name in view.node_names:  # every node, the last ones included
        assert _contains(view.visible_rect(), view.node_item(name).sceneBoundingRect()), name
    # the fitted graph is a thin column: boxes only, no text squeezed into them
    assert view.node_item("mm3").text_mode(view.scale_factor) == "none"
    # ... and each layer is marked in its colour over it, large enough to see
    assert view.overview_marks()
    image = view.viewport().grab().toImage()
    for name in ("mm3", "mm23"):
        item = view.node_item(name)
        p = view.mapFromScene(item.pos())
        assert image.pixelColor(p).name() == item.fill.name(), name
    # a click on a mark selects its layer, as a click on the box does zoomed in
    p = view.mapFromScene(view.node_item("mm17").pos())
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=p)
    assert window.document.selection.names == ("mm17",) and view.focused == "mm17"


def test_text_is_legible_at_every_zoom_or_not_drawn(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    item = window.graph.view.node_item("conv1")
    assert item.text_mode(1.0) == "full"  # op type and name
    assert item.text_mode(0.5) == "title"  # op type alone, in a font scaled to stay legible
    assert item.text_mode(0.1) == "none"  # boxes coloured by error or op family
    view = window.graph.view
    for scale in (1.0, 0.5, 0.1):  # painting at each level runs (grab paints every item)
        view.resetTransform()
        view.scale(scale, scale)
        assert not view.grab().isNull()


def test_find_box_selects_centres_and_enter_cycles(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    find = window.graph.find_box
    view = window.graph.view
    view.zoom(0.05)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)  # Ctrl+F
    assert find.edit.hasFocus()
    qtbot.keyClicks(find.edit, "conv")
    assert find.matches == ["conv1", "conv2"]
    assert window.document.selection.names == ("conv1",)
    assert find.count.text() == "1/2"
    assert view.scale_factor >= 1.0  # shown at a readable scale
    assert view.visible_rect().contains(view.node_item("conv1").sceneBoundingRect().center())
    qtbot.keyClick(find.edit, Qt.Key.Key_Return)
    assert window.document.selection.names == ("conv2",) and find.count.text() == "2/2"
    qtbot.keyClick(find.edit, Qt.Key.Key_Return)  # wraps around
    assert window.document.selection.names == ("conv1",)
    qtbot.keyClick(find.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert window.document.selection.names == ("conv2",)
    find.edit.setText("GlobalAveragePool")  # by op type: a node that is not a layer
    assert find.matches == ["gap"] and view.focused == "gap"
    assert window.graph.properties.row_text("Node", "op type") == "GlobalAveragePool"
    find.edit.setText("no such node")
    assert find.matches == [] and find.count.text() == "none"


def test_find_by_planned_format(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    doc = window.document
    plan = Plan.preset(doc.info, "W8A8")
    doc.replace_plan(plan.with_choices({"conv2": plan["conv2"].__class__()}), "mixed")
    wait_idle(qtbot, window)
    find = window.graph.find_box
    find.edit.setText("int8")
    assert find.matches == ["conv1", "fc"]
    find.edit.setText("conv float")  # a layer kept in float
    assert find.matches == ["conv2"]


def test_properties_show_attributes_shapes_and_weight_stats(
    qtbot, window, cnn_path: Path
) -> None:
    open_model(qtbot, window, cnn_path)
    doc = window.document
    doc.replace_plan(Plan.preset(doc.info, "W4A8"), "W4A8")
    wait_idle(qtbot, window)
    window.graph.find_box.edit.setText("conv1")
    props = window.graph.properties
    w1 = numpy_helper.to_array(
        next(t for t in small_cnn().graph.initializer if t.name == "W1")
    ).astype(np.float64)
    assert props.row_text("Node", "op type") == "Conv"
    assert props.row_text("Attributes", "pads") == "[1, 1, 1, 1]"
    assert props.row_text("Inputs", "x") == "N×3×8×8 float32"
    assert props.row_text("Outputs", "c1") == "N×8×8×8 float32"
    assert props.row_text("Weight W1", "shape") == "8×3×3×3 float32"
    assert props.row_text("Weight W1", "bytes") == f"864 B ({w1.size * 4} B)"
    assert props.row_text("Weight W1", "format") == doc.plan["conv1"].weight.name
    lo, hi = props.row_text("Weight W1", "min / max").split(" / ")
    assert float(lo) == pytest.approx(w1.min(), rel=1e-3)
    assert float(hi) == pytest.approx(w1.max(), rel=1e-3)
    mean, std = props.row_text("Weight W1", "mean / std").split(" / ")
    assert float(mean) == pytest.approx(w1.mean(), rel=1e-3)
    assert float(std) == pytest.approx(w1.std(), rel=1e-3)
    assert props.row_text("Weight b1", "format") == "float (bias)"


def test_minimap_click_moves_the_view(qtbot, window, chain_path: Path) -> None:
    open_model(qtbot, window, chain_path)
    view, minimap = window.graph.view, window.graph.minimap
    graph = view.graph_rect()
    assert view.visible_rect().center().y() < graph.center().y()  # opened at the top
    bottom = minimap.to_map(QPointF(graph.center().x(), graph.bottom() - 10))
    qtbot.mouseClick(minimap, Qt.MouseButton.LeftButton, pos=bottom.toPoint())
    assert view.visible_rect().contains(view.node_item("output:y").sceneBoundingRect().center())
    top = minimap.to_map(QPointF(graph.center().x(), graph.top() + 10))
    qtbot.mouseMove(minimap, bottom.toPoint())
    qtbot.mousePress(minimap, Qt.MouseButton.LeftButton, pos=bottom.toPoint())
    qtbot.mouseMove(minimap, top.toPoint())  # a drag follows the mouse
    qtbot.mouseRelease(minimap, Qt.MouseButton.LeftButton, pos=top.toPoint())
    assert view.visible_rect().contains(view.node_item("input:x").sceneBoundingRect().center())


def test_zoom_to_selection(qtbot, window, chain_path: Path) -> None:
    open_model(qtbot, window, chain_path)
    view = window.graph.view
    window.document.selection.set(["mm20"])
    view.set_focus("relu20_1")  # the focused node counts too (clicked: not a layer)
    view.fit()
    window.graph.buttons["selection"].click()
    for name in ("mm20", "relu20_1"):
        assert view.visible_rect().contains(view.node_item(name).sceneBoundingRect())
    assert view.scale_factor <= SELECTION_ZOOM
    assert view.node_item("mm20").text_mode(view.scale_factor) != "none"  # readable now


def test_large_weight_stats_are_computed_off_the_ui_thread(
    qtbot, window, cnn_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 30522 x 384 embedding's statistics took most of a second on the UI thread; above
    STATS_INLINE values the pane says "computing…" and a worker fills in the same numbers."""
    from bitlens.gui import graph_properties

    monkeypatch.setattr(graph_properties, "STATS_INLINE", 1000)  # W2 has 1152 values, W3 160
    open_model(qtbot, window, cnn_path)
    props = window.graph.properties
    window.graph.find_box.edit.setText("conv2")
    assert props.details is not None and props.details.name == "conv2"
    # the refresh that shows the numbers runs on this thread: none can have come yet
    assert props.row_text("Weight W2", "min / max") == "computing…"
    w2 = numpy_helper.to_array(
        next(t for t in small_cnn().graph.initializer if t.name == "W2")
    ).astype(np.float64)
    qtbot.waitUntil(lambda: props.row_text("Weight W2", "min / max") != "computing…", timeout=WAIT_MS)
    lo, hi = props.row_text("Weight W2", "min / max").split(" / ")
    assert float(lo) == pytest.approx(w2.min(), rel=1e-3)
    assert float(hi) == pytest.approx(w2.max(), rel=1e-3)
    mean, std = props.row_text("Weight W2", "mean / std").split(" / ")
    assert float(mean) == pytest.approx(w2.mean(), rel=1e-3, abs=1e-6)
    assert float(std) == pytest.approx(w2.std(), rel=1e-3)
    window.graph.find_box.edit.setText("fc")
    assert props.row_text("Weight W3", "min / max") != "computing…"  # small: at once


def test_minimap_draws_each_node_where_to_map_puts_it(qtbot, window, chain_path: Path) -> None:
    """The minimap's pixmap maps every node once per render instead of through ``to_map``
    per node (24 ms a recolour on PP-OCRv4 rec's graph): the same pixels as painting each
    node's ``to_map`` rectangle in its colour, selected layers in the highlight."""
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QPainter, QPalette, QPixmap

    from bitlens.gui import colors

    open_model(qtbot, window, chain_path)
    window.document.selection.set(["mm3", "mm20"])
    view, minimap = window.graph.view, window.graph.minimap
    _rect, kx, ky = minimap._frame()
    boxes = []
    for name in view.node_names:
        item = view.node_item(name)
        r = item.sceneBoundingRect()
        corner = minimap.to_map(r.topLeft())
        size = (max(r.width() * kx, 2.0), max(r.height() * ky, 2.0))
        boxes.append((QRectF(corner.x(), corner.y(), *size), item))
    assert sum(item.highlighted for _box, item in boxes) == 2
    expected = QPixmap(minimap.size())
    expected.fill(minimap.palette().color(QPalette.ColorRole.Base))
    painter = QPainter(expected)
    painter.setPen(Qt.PenStyle.NoPen)
    for box, item in boxes:
        painter.fillRect(box, colors.HIGHLIGHT if item.highlighted else item.fill)
    painter.end()
    assert minimap._render().toImage() == expected.toImage()
