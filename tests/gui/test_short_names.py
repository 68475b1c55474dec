"""At 1280x720 the Layer column tells layers apart on a model whose names share a long
prefix and differ in the middle (paraphrase-MiniLM-L3-v2 read ``/model/mod…ngs/Gather``
three times); full names stay in the tooltip and the filter (issue 15, real models)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QApplication

from bitlens.gui.layer_table_model import Column
from tests import builders as b
from tests.gui.conftest import WAIT_MS, open_model

PREFIX = "/model/model.0/auto_model/encoder"
PARTS = ("attention/self/query", "attention/self/key", "attention/self/value",
         "attention/output/dense", "intermediate/dense", "output/dense")  # fmt: skip


def long_names() -> onnx.ModelProto:
    """A chain of 12 MatMuls named like a BERT export::

    x[1,8] -> MatMul(/model/model.0/auto_model/encoder/layer.0/attention/self/query/MatMul)
           -> ... (layer.0 and layer.1, query/key/value/attention output/intermediate/output)
           -> y[1,8]
    """
    nodes, inits, prev = [], [], "x"
    names = [f"{PREFIX}/layer.{i}/{p}/MatMul" for i in range(2) for p in PARTS]
    for k, name in enumerate(names):
        out = "y" if k == len(names) - 1 else f"t{k}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{k}"], [out], name=name))
        inits.append(b.init(f"w{k}", b.weights((8, 8), seed=k)))
        prev = out
    graph = helper.make_graph(
        nodes, "bert_names",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        inits,
    )  # fmt: skip
    return b.model(graph)


@pytest.fixture
def bert_path(tmp_path: Path) -> Path:
    p = tmp_path / "bert_names.onnx"
    onnx.save(long_names(), p)
    return p


def _shown(view, text: str) -> str:
    """The text the Layer column paints for ``text`` (its width, middle elision)."""
    fm = QFontMetricsF(view.font())
    return fm.elidedText(text, Qt.TextElideMode.ElideMiddle, view.columnWidth(Column.NAME) - 8)


def test_layer_column_tells_layers_apart_at_1280(qtbot, window, bert_path) -> None:
    open_model(qtbot, window, bert_path)
    window.resize(1280, 720)
    QApplication.processEvents()
    table = window.table
    view, proxy = table.view, table.proxy
    names = [proxy.index(r, Column.NAME).data(Qt.ItemDataRole.UserRole + 2) for r in range(12)]
    displayed = [proxy.index(r, Column.NAME).data() for r in range(12)]
    shown = [_shown(view, t) for t in displayed]
    assert len(set(shown)) == 12, shown  # every row reads differently
    # the full names, elided the same way, did not (what the tester saw)
    assert len({_shown(view, n) for n in names}) < 12
    assert "layer.1/attention/query/MatMul" in displayed
    for r, name in enumerate(names):
        assert name in proxy.index(r, Column.NAME).data(Qt.ItemDataRole.ToolTipRole)
    # the filter matches full names: "auto_model" is in no short name but in every layer
    table.filter.setText("auto_model")
    assert proxy.rowCount() == 12
    table.filter.setText("layer.1/attention/self")
    assert proxy.rowCount() == 3
    table.filter.setText("")
    # the graph's boxes and properties show the short form, full name on hover
    first = f"{PREFIX}/layer.0/attention/self/query/MatMul"
    window.document.selection.set([first], first, origin=None)
    QApplication.processEvents()
    qtbot.waitUntil(lambda: window.graph.properties.details is not None, timeout=WAIT_MS)
    top = window.graph.properties.topLevelItem(0)
    assert top.text(1) == "layer.0/attention/query/MatMul" and top.toolTip(1) == first
