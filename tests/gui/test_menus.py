"""Menu commands: samples, calibration method, sweep and data dialogs, theme, reset."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from bitlens.gui.data_dialog import DataDialog
from bitlens.gui.jobs import DataRequest
from bitlens.gui.sweep_dialog import SweepDialog
from bitlens.gui.theme import apply_theme
from tests.gui.conftest import WAIT_MS, open_model, wait_idle


def test_samples_menu_lists_the_bundled_samples(qtbot, window) -> None:
    texts = [a.text() for a in window.samples_menu.actions()]
    assert len(texts) == 3 and "(image)" in texts[0]
    window.samples_menu.actions()[0].trigger()
    wait_idle(qtbot, window)
    assert "(sample)" in window.windowTitle()
    assert window.document.session.data.labels is not None


def test_actions_need_a_model(qtbot, window, cnn_path: Path) -> None:
    assert not window.act_sweep.isEnabled() and not window.act_save_plan.isEnabled()
    open_model(qtbot, window, cnn_path)
    assert window.act_sweep.isEnabled() and window.act_save_plan.isEnabled()


def test_calibration_method_recalibrates_and_reevaluates(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    model = window.table.model
    model.setData(model.index(model.row_of("conv2"), 5), "int8 asym")
    wait_idle(qtbot, window)
    minmax = window.document.evaluation.layers["conv2"].local
    act = next(a for a in window.calibration_group.actions() if a.text() == "percentile")
    with qtbot.waitSignal(window.controller.calibrated, timeout=WAIT_MS):
        act.trigger()
    wait_idle(qtbot, window)
    assert window.controller.calibration == "percentile" and act.isChecked()
    assert window.document.evaluation.layers["conv2"].local != minmax


def test_sweep_and_data_dialogs_start_jobs(qtbot, window, mlp_path: Path, monkeypatch) -> None:
    open_model(qtbot, window, mlp_path)
    window.document.selection.set(["mm_b"])
    asked = []

    def ask_sweep(selected, parent=None, **_counts):
        asked.append(tuple(selected))
        return ["int2 sym ch"], list(selected)

    monkeypatch.setattr(SweepDialog, "ask", staticmethod(ask_sweep))
    with qtbot.waitSignal(window.controller.sweepFinished, timeout=WAIT_MS) as blocker:
        window.act_sweep.trigger()
    assert asked == [("mm_b",)]
    assert [(e.layer, e.format) for e in blocker.args[0]] == [("mm_b", "int2 sym ch")]
    assert window.docks["sweep"].isVisible()
    # double-clicking a sweep result applies that format
    window.sweep.table.cellDoubleClicked.emit(0, 0)
    wait_idle(qtbot, window)
    assert window.document.plan["mm_b"].weight.name == "int2 sym ch"

    monkeypatch.setattr(
        DataDialog, "ask", staticmethod(lambda info, parent=None, dims=None: DataRequest(samples=2, seed=9))
    )
    window.act_open_data.trigger()
    qtbot.waitUntil(lambda: "seed 9" in window.document.session.data.source, timeout=WAIT_MS)


def test_sweep_dialog_defaults(qtbot) -> None:
    dlg = SweepDialog(["a", "b"])
    qtbot.addWidget(dlg)
    formats, layers = dlg.choice()
    assert "int4 sym ch" in formats and "fp16" not in formats
    assert layers == ["a", "b"]
    dlg.all_layers.setChecked(True)
    assert dlg.choice()[1] is None


def test_theme_switch_changes_palette_and_is_saved(qtbot, window, settings, cnn_path) -> None:
    open_model(qtbot, window, cnn_path)
    try:
        window.set_theme("dark")
        app = QApplication.instance()
        assert app.palette().color(QPalette.ColorRole.Window).lightnessF() < 0.5
        assert settings.theme() == "dark"
        window.set_theme("light")
        assert app.palette().color(QPalette.ColorRole.Window).lightnessF() > 0.5
    finally:
        apply_theme(QApplication.instance(), "system")


def test_reset_plan_is_undoable(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    window.table.preset_combo.setCurrentText("fp16")  # a float model follows no preset
    window.table.preset_all.click()
    wait_idle(qtbot, window)
    assert window.document.plan.choices
    window.act_reset.trigger()
    wait_idle(qtbot, window)
    assert not window.document.plan.choices
    window.act_undo.trigger()
    assert window.document.plan.choices


def test_sample_opens_quantized_and_clean(qtbot, window) -> None:
    """A sample starts at W8A8 (sizes and errors on show) without being an unsaved edit."""
    from tests.gui.conftest import wait_idle

    window.open_sample("speech_kws")
    wait_idle(qtbot, window)
    doc = window.document
    assert all(c.weight is not None for c in doc.plan.choices.values())
    assert len(doc.plan.choices) == len(doc.info.layers)
    assert not doc.is_modified and doc.undo_stack.count() == 0
    assert doc.evaluation.bytes_after < doc.evaluation.bytes_before
    assert "accuracy" in window.status.output_label.text()
