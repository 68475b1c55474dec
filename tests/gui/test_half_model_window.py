"""The window over a model stored and run in float16 (ONNX Runtime's converter, keep_io_types):
the message bar says its activations stay float16, the layer table offers weight formats but
no activation format (the engine quantizes activations in float32 only: choosing one used to
fail at evaluation), and the W8A8 preset gives int8 weights with no activation quantizer."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16
from PySide6.QtCore import Qt

from bitlens.core.plan import Plan
from bitlens.gui.layer_table_model import Column
from tests.builders import conv_net
from tests.gui.conftest import open_model


def test_float16_model_offers_weights_but_not_activations(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "half.onnx"
    onnx.save(convert_float_to_float16(conv_net(), keep_io_types=True), str(path))
    open_model(qtbot, window, path)
    assert window.document.is_open
    assert "compute on float16 activations" in window.message_bar.text.text()
    model = window.table.model
    for layer in ("conv1", "conv2", "fc"):
        row = model.row_of(layer)
        assert model.flags(model.index(row, Column.WEIGHT)) & Qt.ItemFlag.ItemIsEditable
        assert not model.flags(model.index(row, Column.ACTIVATION)) & Qt.ItemFlag.ItemIsEditable
    plan = Plan.preset(window.document.info, "W8A8")
    got = {n: (c.weight.name if c.weight else None, c.activation) for n, c in plan.choices.items()}
    assert got == {n: ("int8 sym ch", None) for n in ("conv1", "conv2", "fc")}
