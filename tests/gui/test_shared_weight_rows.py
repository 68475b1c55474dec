"""Readers of one weight in the layer table: editing one reader's weight cell changes its
group's rows, the cells say why, and a plan file that split the group is opened normalized
(captcha-whisperer's unrolled LSTMCell showed steps as float that the export stored int8)."""

from __future__ import annotations

import json

import onnx
from PySide6.QtCore import Qt

from bitlens.core.plan import LayerChoice
from bitlens.gui.layer_table_model import Column
from tests import exported_shapes
from tests.gui.conftest import open_model, wait_idle

CELLS = [f"cell_{t}/Gemm" for t in range(3)]
INT8 = "int8 sym ch"


def _rows(model, col: Column) -> list[str]:
    return [model.index(model.row_of(n), col).data() for n in CELLS]


def test_editing_one_reader_edits_its_group(qtbot, window, tmp_path) -> None:
    path = tmp_path / "rnn.onnx"
    onnx.save(exported_shapes.unrolled_rnn(3, 8), path)
    open_model(qtbot, window, path)
    model = window.table.model
    assert model.setData(model.index(model.row_of(CELLS[1]), Column.WEIGHT), INT8)
    assert {window.document.plan[n].weight.name for n in CELLS} == {INT8}
    assert len(set(_rows(model, Column.WEIGHT))) == 1 and INT8 in _rows(model, Column.WEIGHT)[0]
    tip = model.index(model.row_of(CELLS[0]), Column.WEIGHT).data(Qt.ItemDataRole.ToolTipRole)
    assert "shares its weights with 2 other layer(s)" in tip
    assert "2 layers reading the same weight" in window.document.undo_stack.undoText()
    wait_idle(qtbot, window)
    sizes = _rows(model, Column.SIZE)  # each reader: the one int8 copy the file holds
    assert len(set(sizes)) == 1 and "…" not in sizes[0], sizes

    # a plan file with the first step int8 and the others float opens as the export runs it
    plan = {"bitlens_plan": 1, "layers": {CELLS[0]: {"weight": INT8, "activation": None}}}
    plan_path = tmp_path / "split.json"
    plan_path.write_text(json.dumps(plan))
    window.document.edit({CELLS[0]: LayerChoice()}, "float")
    assert all(window.document.plan[n].weight is None for n in CELLS)
    assert window.controller.load_plan(plan_path)
    assert {window.document.plan[n].weight.name for n in CELLS} == {INT8}
    assert "disagreed on its format" in window.document.undo_stack.undoText()
    assert json.loads(plan_path.read_text()) == plan  # the user's file is left as it was
