"""Opening models, editing formats in the table, undo/redo, presets, bad files."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtWidgets import QComboBox

from bitlens.gui.layer_table_model import NAME_ROLE, Column
from tests.gui.conftest import WAIT_MS, open_model, wait_idle


def _cell(w, name: str, column: Column):
    table = w.table
    src = table.model.index(table.model.row_of(name), column)
    return table.proxy.mapFromSource(src)


def test_open_model_fills_every_view(qtbot, window, cnn_path: Path, settings) -> None:
    open_model(qtbot, window, cnn_path)
    doc = window.document
    assert window.stack.currentWidget() is window.table
    assert window.table.proxy.rowCount() == len(doc.info.layers) == 3
    assert "cnn.onnx" in window.windowTitle()
    # the graph shows every node plus the model input and output
    items = window.graph.view._items
    assert {"conv1", "relu1", "gap", "fc", "input:x", "output:y"} <= set(items)
    assert window.status.size_label.text().startswith("Weights ")
    assert "CPU" in window.status.providers_label.text()
    assert settings.recent_models() == [cnn_path.resolve()]


def test_delegate_edit_changes_summary(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    doc = window.document
    before = doc.evaluation
    assert before is not None and before.bytes_after == before.bytes_before
    view = window.table.view
    idx = _cell(window, "conv2", Column.WEIGHT)
    view.setCurrentIndex(idx)
    view.edit(idx)
    combo = view.findChild(QComboBox, "formatEditor")
    assert combo is not None, "double-clicking a format cell opens a combo box"
    i = combo.findText("int4 sym ch")
    assert i > 0
    with qtbot.waitSignal(doc.evaluationChanged, timeout=WAIT_MS):
        combo.setCurrentIndex(i)
        combo.activated.emit(i)
    wait_idle(qtbot, window)
    assert doc.plan["conv2"].weight.name == "int4 sym ch"
    after = doc.evaluation
    assert after.bytes_after < after.bytes_before
    assert after.layers["conv2"].weight is not None
    assert idx.data(Qt.ItemDataRole.DisplayRole) == "int4 sym ch"
    assert "→" in window.status.size_label.text()
    assert window.status.size_label.text() != ""
    assert window.isWindowModified()


def test_undo_redo_restore_plans(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    doc = window.document
    model = window.table.model
    assert model.setData(model.index(model.row_of("fc"), Column.WEIGHT), "int8 sym ch")
    wait_idle(qtbot, window)
    quantized = doc.evaluation.bytes_after
    assert window.act_undo.shortcut().toString() == "Ctrl+Z"
    window.act_undo.trigger()
    wait_idle(qtbot, window)
    assert doc.plan["fc"].weight is None
    assert doc.evaluation.bytes_after == doc.evaluation.bytes_before
    assert not window.isWindowModified()
    window.act_redo.trigger()
    wait_idle(qtbot, window)
    assert doc.plan["fc"].weight.name == "int8 sym ch"
    assert doc.evaluation.bytes_after == quantized


def test_set_format_for_selection_and_presets(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    doc, table = window.document, window.table
    sm = table.view.selectionModel()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for name in ("conv1", "fc"):
        sm.select(_cell(window, name, Column.NAME), flags)
    assert set(doc.selection.names) == {"conv1", "fc"}
    table.weight_combo.setCurrentText("int4 sym ch")
    table.act_combo.setCurrentText("uint8 asym")
    table.apply_button.click()
    wait_idle(qtbot, window)
    for name in ("conv1", "fc"):
        assert doc.plan[name].weight.name == "int4 sym ch"
        assert doc.plan[name].activation.name == "uint8 asym"
    assert doc.plan["conv2"].is_float
    table.preset_combo.setCurrentText("W8A8")
    table.preset_all.click()
    wait_idle(qtbot, window)
    assert all(doc.plan[n].weight.name == "int8 sym ch" for n in ("conv1", "conv2", "fc"))
    assert doc.undo_stack.count() == 2
    # filtering narrows the table without touching the plan
    table.filter.setText("gemm")
    assert table.proxy.rowCount() == 1
    assert table.proxy.index(0, 0).data(NAME_ROLE) == "fc"


def test_corrupt_file_shows_message_and_app_stays_usable(
    qtbot, window, tmp_path: Path, cnn_path: Path
) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf \xff\xfe" * 10)
    window.open_model(bad)
    bar = window.message_bar
    qtbot.waitUntil(lambda: bar.isVisible() and not window.runner.busy, timeout=WAIT_MS)
    assert bar.level == "error"
    assert "broken.onnx" in bar.text.text()
    assert "Traceback" not in bar.text.text()
    assert not window.document.is_open
    open_model(qtbot, window, cnn_path)
    assert window.document.is_open
    assert not bar.isVisible()


def test_invalid_edit_is_reported_not_applied(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    model = window.table.model
    ok = model.setData(model.index(model.row_of("fc"), Column.WEIGHT), "int9 sym")
    assert not ok
    assert window.message_bar.isVisible()
    assert "int9" in window.message_bar.text.text()
    assert window.document.plan["fc"].is_float
    assert window.document.undo_stack.count() == 0


def test_plan_the_engine_refuses_is_reported_and_undo_recovers(
    qtbot, window, tmp_path: Path
) -> None:
    import onnx

    from tests.builders import fp64_gemm

    path = tmp_path / "fp64.onnx"
    onnx.save(fp64_gemm(), path)
    open_model(qtbot, window, path)
    model = window.table.model
    assert model.setData(model.index(0, Column.ACTIVATION), "uint8 asym")
    qtbot.waitUntil(lambda: window.document.evaluation_failed and not window.runner.busy)
    assert "float64" in window.message_bar.text.text()
    assert "failed" in window.status.size_label.text()
    window.act_undo.trigger()
    wait_idle(qtbot, window)
    assert not window.document.evaluation_failed
    assert "failed" not in window.status.size_label.text()


def test_undo_redo_keyboard_shortcuts(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    window.activateWindow()
    model = window.table.model
    model.setData(model.index(model.row_of("conv1"), Column.WEIGHT), "int8 sym ch")
    wait_idle(qtbot, window)
    view = window.table.view
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.document.plan["conv1"].is_float
    qtbot.keyClick(
        view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    assert window.document.plan["conv1"].weight.name == "int8 sym ch"
    wait_idle(qtbot, window)


def test_target_combo_changes_the_plan_target_undoably(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    doc, table = window.document, window.table
    table.preset_combo.setCurrentText("W8A8")
    table.preset_all.click()
    wait_idle(qtbot, window)
    assert doc.plan.target == "ort-cpu" and table.target_combo.currentData() == "ort-cpu"
    ort_eval = doc.evaluation
    table.target_combo.activated.emit(table.target_combo.findData("none"))
    wait_idle(qtbot, window)
    assert doc.plan.target == "none"
    assert doc.plan["conv1"].weight.name == "int8 sym ch"  # the per-layer choices stay
    # the window evaluated the other structure: the target's extra quantizers are gone
    assert doc.evaluation is not ort_eval and doc.evaluated_plan.target == "none"
    doc.undo_stack.undo()
    wait_idle(qtbot, window)
    assert doc.plan.target == "ort-cpu" and table.target_combo.currentData() == "ort-cpu"


def test_presets_for_the_tensorrt_target_use_its_formats(qtbot, window, cnn_path: Path) -> None:
    """With the TensorRT target, W8A8 is int8 sym narrow ch / int8 sym (TensorRT's int8)."""
    open_model(qtbot, window, cnn_path)
    doc, table = window.document, window.table
    table.target_combo.activated.emit(table.target_combo.findData("tensorrt"))
    wait_idle(qtbot, window)
    table.preset_combo.setCurrentText("W8A8")
    table.preset_all.click()
    wait_idle(qtbot, window)
    assert doc.plan.target == "tensorrt"
    assert doc.plan["conv1"].weight.name == "int8 sym narrow ch"
    assert doc.plan["conv1"].activation.name == "int8 sym"
    assert table.preset_combo.currentText() == "W8A8"  # the box names the preset it follows


def test_size_column_flags_a_format_that_cannot_save_bytes(qtbot, window, tmp_path: Path) -> None:
    """int4 blk32 on a depthwise conv (reduction axis of size 1) stores a scale per weight."""
    import onnx

    from bitlens.core.plan import Plan
    from tests.core.test_export_accounting import _depthwise

    path = tmp_path / "dw.onnx"
    onnx.save(_depthwise(), path)
    open_model(qtbot, window, path)
    doc = window.document
    doc.replace_plan(Plan.uniform(doc.info, "int4 sym blk32"), "blk32 everywhere")
    model = window.table.model
    size = {
        name: model.index(model.row_of(name), Column.SIZE)
        for name in ("dw", "pw")
    }
    assert "⚠" in model.data(size["dw"])
    assert "cannot save bytes" in model.data(size["dw"], Qt.ItemDataRole.ToolTipRole)
    assert "⚠" not in model.data(size["pw"])
