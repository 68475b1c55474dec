"""The table's Recovery and BOPs columns and the sandbox's recovery comparison."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from bitlens.core.compute import compute_of
from bitlens.gui.layer_table_model import Column
from tests.gui.conftest import WAIT_MS, open_model, wait_detail, wait_idle


def test_recovery_column_edits_the_plan_and_the_detail_compares_methods(
    qtbot, window, cnn_path: Path
) -> None:
    open_model(qtbot, window, cnn_path)
    model = window.table.model
    row = model.row_of("conv2")
    assert model.setData(model.index(row, Column.WEIGHT), "int4 sym ch", Qt.ItemDataRole.EditRole)
    assert model.index(row, Column.RECOVERY).data(Qt.ItemDataRole.UserRole + 1)[1:] == [
        "bias_correction", "gptq", "awq", "clip_search", "smoothquant"
    ]
    assert model.setData(model.index(row, Column.RECOVERY), "gptq", Qt.ItemDataRole.EditRole)
    wait_idle(qtbot, window)
    assert window.document.plan["conv2"].recovery.value == "gptq"
    assert model.index(row, Column.RECOVERY).data() == "gptq"
    # a weight change keeps the method; "off" removes it
    assert model.setData(model.index(row, Column.WEIGHT), "int3 sym ch", Qt.ItemDataRole.EditRole)
    assert window.document.plan["conv2"].recovery.value == "gptq"
    bops = compute_of(window.document.session.engine).bops(window.document.info, window.document.plan)
    assert bops["conv2"] and model.index(row, Column.BOPS).data() not in ("", "—", None)
    window.document.selection.set(["conv2"])
    wait_detail(qtbot, window, "conv2", "int3 sym ch")
    table = window.detail.recovery
    methods = [table.item(i, 0).text() for i in range(table.rowCount())]
    assert methods == ["plain", "bias_correction", "gptq", "awq", "clip_search", "smoothquant"]
    gptq = methods.index("gptq")
    assert table.item(gptq, 2).text().startswith("+")  # better than plain rounding
    assert table.item(gptq, 0).font().bold()  # the layer's current method
    # the Codes tab shows GPTQ's stored codes, as the export writes them
    detail = window.detail
    detail.sandboxes.setCurrentWidget(detail.codes)
    qtbot.waitUntil(lambda: detail.codes.slice is not None and detail.codes.layer == "conv2",
                    timeout=WAIT_MS)  # fmt: skip
    assert "codes chosen by gptq" in detail.codes.slice.formula
    wait_idle(qtbot, window)  # the engine is the worker's while it runs
    engine = window.document.session.engine
    want = engine.recovery.result(engine.info.layer("conv2"), window.document.plan["conv2"].weight,
                                  window.document.plan["conv2"].recovery).qtensor.codes  # fmt: skip
    assert [r.code for r in detail.codes.slice.rows] == list(want.reshape(-1)[:64])
    # with a quantized input the comparison quantizes it as planned (where SmoothQuant acts)
    assert model.setData(model.index(row, Column.ACTIVATION), "uint8 asym", Qt.ItemDataRole.EditRole)
    assert model.setData(model.index(row, Column.RECOVERY), "smoothquant", Qt.ItemDataRole.EditRole)
    qtbot.waitUntil(lambda: window.detail.detail is not None and window.detail.detail.complete
                    and window.detail.detail.choice.recovery is not None
                    and window.detail.detail.choice.recovery.value == "smoothquant",
                    timeout=WAIT_MS)  # fmt: skip
    assert window.detail.detail.recovery_format == "int3 sym ch, uint8 asym activations"
    smooth = [table.item(i, 0).text() for i in range(table.rowCount())].index("smoothquant")
    assert table.item(smooth, 0).font().bold() and "uint8 asym" in table.item(smooth, 3).text()
    assert model.setData(model.index(row, Column.RECOVERY), "off", Qt.ItemDataRole.EditRole)
    assert window.document.plan["conv2"].recovery is None


def test_format_edits_elsewhere_keep_recovery_where_it_applies(
    qtbot, window, cnn_path: Path
) -> None:
    """Set for selection, the sandbox and the activation sandbox keep a layer's method
    (they dropped it); a weight format the method cannot use drops it instead of failing."""
    open_model(qtbot, window, cnn_path)
    model = window.table.model
    row = model.row_of("conv2")
    assert model.setData(model.index(row, Column.WEIGHT), "int4 sym ch", Qt.ItemDataRole.EditRole)
    assert model.setData(model.index(row, Column.RECOVERY), "gptq", Qt.ItemDataRole.EditRole)
    wait_idle(qtbot, window)
    doc, table = window.document, window.table
    doc.selection.set(["conv2"])
    table.weight_combo.setCurrentText("int3 sym ch")
    table.apply_to_selection()
    assert doc.plan["conv2"].weight.name == "int3 sym ch"
    assert doc.plan["conv2"].recovery.value == "gptq"
    window.set_weight_format("conv2", "int5 sym ch")  # the sandbox's double-click
    assert doc.plan["conv2"].recovery.value == "gptq"
    assert not window.message_bar.isVisible()
    table.weight_combo.setCurrentText("fp16")  # GPTQ needs an integer format
    table.apply_to_selection()
    assert doc.plan["conv2"].weight.name == "fp16" and doc.plan["conv2"].recovery is None
    wait_idle(qtbot, window)
