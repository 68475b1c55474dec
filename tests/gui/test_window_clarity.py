"""What the window says matches what it holds: the frozen name column, one error kind
for every view, the preset box, stale errors, shortcuts from the filter box, units, and
the layer detail across a cancelled sweep."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QFileDialog

from bitlens.cli.common import fmt_bytes as cli_bytes
from bitlens.core.errors import PlanError
from bitlens.core.plan import Plan
from bitlens.gui.layer_table_model import Column
from bitlens.gui.text import fmt_bytes
from tests.gui.conftest import WAIT_MS, open_model, wait_idle
from tests.gui.test_views_and_jobs import _slowed_sweep


def test_layer_names_stay_visible_when_scrolling_right(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    window.resize(1000, 700)
    view = window.table.view
    frozen = view.frozen
    shown = [c for c in range(view.model().columnCount()) if not frozen.isColumnHidden(c)]
    assert shown == [Column.NAME]
    view.horizontalScrollBar().setValue(view.horizontalScrollBar().maximum())
    QApplication.processEvents()
    assert frozen.isVisible() and frozen.columnWidth(Column.NAME) == view.columnWidth(Column.NAME)
    first = frozen.indexAt(frozen.viewport().rect().topLeft())
    assert first.isValid() and first.column() == Column.NAME
    # the frozen view shares the selection: a click on a name selects its row everywhere
    index = frozen.model().index(1, Column.NAME)
    qtbot.mouseClick(
        frozen.viewport(), Qt.MouseButton.LeftButton, pos=frozen.visualRect(index).center()
    )
    assert window.document.selection.names == (index.data(),)


def test_one_error_kind_for_table_graph_and_plots(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    window.document.replace_plan(Plan.preset(window.document.info, "W8A8"), "preset")
    wait_idle(qtbot, window)
    model = window.table.model
    kind = window.document.error_kind
    assert window.graph.view.color_by == kind.kind == window.plots.source.currentData()
    window.plots.source.setCurrentIndex(window.plots.source.findData("local"))
    assert kind.kind == "local"
    assert window.graph.view.color_by == "local"
    assert window.graph.metric_box.currentData() == "local"
    assert "only this layer quantized" in window.plots.kind_help.text()
    row = model.index(0, Column.LOCAL)
    assert row.data(Qt.ItemDataRole.BackgroundRole) is not None
    assert model.index(0, Column.ACCUMULATED).data(Qt.ItemDataRole.BackgroundRole) is None
    bold = model.headerData(Column.LOCAL, Qt.Orientation.Horizontal, Qt.ItemDataRole.FontRole)
    assert bold is not None and bold.bold()
    window.graph.metric_box.setCurrentIndex(window.graph.metric_box.findData("weight"))
    assert window.plots.source.currentData() == "weight" and kind.kind == "weight"


def test_preset_box_names_only_the_preset_the_plan_follows(qtbot, window) -> None:
    window.open_sample("digits_cnn")
    wait_idle(qtbot, window)
    box = window.table.preset_combo
    assert box.currentText() == "W8A8"  # samples open at W8A8
    name = window.document.info.layer_names[0]
    window.set_weight_format(name, "int4 sym ch")
    assert box.currentIndex() == -1 and box.placeholderText() == "(mixed plan)"
    window.document.replace_plan(Plan.preset(window.document.info, "W4A8"), "preset")
    assert box.currentText() == "W4A8"
    window.table.preset_combo.setCurrentIndex(-1)
    window.table.apply_preset(selected_only=False)  # no preset chosen: nothing happens
    assert box.currentIndex() == -1 or box.currentText() == "W4A8"


def test_loading_a_plan_is_not_an_unsaved_change(
    qtbot, window, cnn_path: Path, tmp_path: Path, monkeypatch
) -> None:
    open_model(qtbot, window, cnn_path)
    info = window.document.info
    plan_file = tmp_path / "p.json"
    plan_file.write_text(Plan.preset(info, "W8A8").to_json())
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(plan_file), ""))
    window.open_plan_dialog()
    assert window.document.plan == Plan.preset(info, "W8A8")
    assert not window.document.is_modified and not window.isWindowModified()
    window.document.undo_stack.undo()
    assert window.document.is_modified  # the plan before opening it is an edit away


def test_an_error_goes_once_the_same_kind_of_action_succeeds(
    qtbot, window, cnn_path: Path
) -> None:
    open_model(qtbot, window, cnn_path)
    name = window.document.info.layer_names[0]
    window.set_weight_format(name, "int99 nonsense")
    assert window.message_bar.isVisible() and window.message_bar.level == "error"
    window.set_weight_format(name, "int8 sym ch")
    wait_idle(qtbot, window)
    assert not window.message_bar.isVisible()
    # an error of another kind (a plan file) stays until a file action succeeds
    window.message_bar.show_error("Opening the plan x.json", PlanError("broken"))
    window.set_weight_format(name, "int4 sym ch")
    wait_idle(qtbot, window)
    assert window.message_bar.isVisible()


def test_ctrl_e_exports_from_the_filter_box(qtbot, window, cnn_path: Path, monkeypatch) -> None:
    open_model(qtbot, window, cnn_path)
    asked: list[str] = []
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", lambda *a, **k: (asked.append("export"), ("", ""))[1]
    )
    line = window.table.filter

    class X11LineEdit(QObject):
        """What QLineEdit does under X11, where Qt binds Ctrl+E to end-of-line (the
        offscreen platform binds only End): it claims the key before any shortcut."""

        def eventFilter(self, _watched, event) -> bool:
            if event.type() == QEvent.Type.ShortcutOverride and event.key() == Qt.Key.Key_E:
                event.accept()
                return True
            return False

    claimer = X11LineEdit(line)
    line.installEventFilter(claimer)
    line.removeEventFilter(window.table)  # the table's own filter runs first, as it would
    line.installEventFilter(window.table)  # before QLineEdit's event() under X11
    window.activateWindow()
    window.table.filter.setFocus()
    window.table.filter.setText("conv")
    qtbot.keyClick(window.table.filter, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    assert asked == ["export"]
    assert window.table.filter.text() == "conv"


def test_sizes_read_in_binary_units_in_window_and_cli() -> None:
    assert fmt_bytes(18432) == cli_bytes(18432) == "18.0 KiB"
    assert fmt_bytes(3 * 1024 * 1024) == "3.0 MiB"
    assert fmt_bytes(1000) == "1000 B"


def test_size_axis_and_log_scale(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    plots = window.plots
    assert plots.size_plot.getAxis("left").labelText in {"B", "KiB", "MiB"}
    before = plots.before_bars.opts["height"].copy()
    plots.size_scale.setCurrentIndex(1)
    logged = plots.before_bars.opts["height"]
    nbytes = [layer.nbytes for layer in window.document.info.layers]
    assert logged == pytest.approx([math.log10(max(b, 1)) for b in nbytes])
    assert len(before) == len(logged)
    assert "float" in plots.size_legend.text() and "plan" in plots.size_legend.text()


def test_dark_theme_scatter_title_is_readable(qtbot, window, cnn_path: Path, qapp) -> None:
    from bitlens.gui.theme import apply_theme

    open_model(qtbot, window, cnn_path)
    window.docks["outputs"].raise_()
    qtbot.waitUntil(lambda: bool(window.document.outputs), timeout=WAIT_MS)
    try:
        window.set_theme("dark")
        QApplication.processEvents()
        title = window.outputs.plot.getPlotItem().titleLabel
        text = window.outputs.palette().color(window.outputs.palette().ColorRole.Text)
        assert title.text
        assert QColor(title.opts["color"]).name() == text.name()
    finally:
        apply_theme(qapp, "system")


def test_detail_follows_the_selection_through_a_cancelled_sweep(
    qtbot, window, cnn_path: Path, monkeypatch
) -> None:
    _slowed_sweep(monkeypatch, delay=0.2)
    open_model(qtbot, window, cnn_path)
    names = window.document.info.layer_names
    window.document.selection.set([names[0]], names[0])
    qtbot.waitUntil(lambda: window.detail.detail is not None, timeout=WAIT_MS)
    window.controller.run_sweep(["int8 sym ch", "int4 sym ch"])
    qtbot.waitUntil(lambda: window.runner.running is not None and window.runner.running.key == "sweep")
    window.document.selection.set([names[1]], names[1])
    assert window.detail.detail is None  # not the previous layer's plots
    assert names[1] in window.detail.header.text() and "computing" in window.detail.header.text()
    window.controller.cancel()
    qtbot.waitUntil(
        lambda: window.detail.detail is not None and window.detail.detail.layer == names[1],
        timeout=WAIT_MS,
    )


def test_dynamic_activations_are_a_choice_next_to_static(qtbot, window, cnn_path: Path) -> None:
    from bitlens.gui.layer_table_model import CHOICES_ROLE

    open_model(qtbot, window, cnn_path)
    model = window.table.model
    name = window.document.info.layer_names[0]
    index = model.index(model.row_of(name), Column.ACTIVATION)
    choices = index.data(CHOICES_ROLE)
    assert "uint8 asym" in choices and "uint8 asym (dynamic)" in choices
    assert "fp16 (dynamic)" not in choices and "uint8 asym ch (dynamic)" not in choices
    assert model.setData(index, "uint8 asym (dynamic)")
    choice = window.document.plan[name]
    assert choice.dynamic and choice.activation.name == "uint8 asym"
    assert index.data() == "uint8 asym (dynamic)"
    assert "each input" in index.data(Qt.ItemDataRole.ToolTipRole)
    wait_idle(qtbot, window)
    assert not window.document.evaluation_failed
    assert model.setData(index, "uint8 asym")  # back to static, one pick
    assert not window.document.plan[name].dynamic
    # the toolbar for the selection offers the same
    window.document.selection.set([name], name)
    window.table.act_combo.setCurrentText("int8 sym (dynamic)")
    window.table.apply_to_selection()
    assert window.document.plan[name].dynamic
