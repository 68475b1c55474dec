"""The outputs panel says which tensor a picked output's error compares.

An output whose rows a TopK picks (tests/core/test_topk_selected_outputs.py) is measured
on the candidates before the pick (Engine.measured_on): its row reads "(before its pick)",
its tooltip names the tensor, and its SQNR is that tensor's (here ``raw``, an output too).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from PySide6.QtWidgets import QApplication

from tests.core.test_topk_selected_outputs import identity_head
from tests.gui.conftest import WAIT_MS, open_model, screenshot, wait_idle


def test_the_outputs_panel_names_the_tensor_before_the_pick(qtbot, window, tmp_path: Path) -> None:
    path = tmp_path / "topk_head.onnx"
    onnx.save(identity_head(), str(path))
    window.resize(1280, 720)
    open_model(qtbot, window, path)
    window.table.preset_combo.setCurrentText("W8A8")
    window.table.preset_all.click()
    wait_idle(qtbot, window)
    window.docks["outputs"].raise_()
    qtbot.waitUntil(lambda: bool(window.document.outputs), timeout=WAIT_MS)
    wait_idle(qtbot, window)
    QApplication.processEvents()
    table = window.outputs.table
    rows = {table.item(i, 0).text(): i for i in range(table.rowCount())}
    det, raw = rows["det (before its pick)"], rows["raw"]
    assert "compares 'raw'" in table.item(det, 0).toolTip()
    assert table.item(det, 1).text() == table.item(raw, 1).text() != "inf"
    # no output holds class scores: top-1 and KL are hidden, the names keep the room
    assert table.isColumnHidden(3) and table.isColumnHidden(4) and not table.isColumnHidden(1)
    screenshot(window, "picked_outputs_1280x720")


def test_a_classifier_keeps_its_top1_column(qtbot, window) -> None:
    """The digits sample's logits are class scores: top-1 and KL stay shown."""
    window.open_sample("digits_cnn")
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.document.evaluation is not None, timeout=WAIT_MS)
    table = window.outputs.table
    assert not table.isColumnHidden(3) and not table.isColumnHidden(4)
    assert table.item(0, 3).text().endswith("%")
