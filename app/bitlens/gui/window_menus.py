"""The window's menu bar: every command, its shortcut and its object name.

A mixin of :class:`~bitlens.gui.main_window.MainWindow`: the actions call the
window's methods, which live with the rest of the window's behaviour.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from bitlens.core.engine import CalibrationMethod
from bitlens.gui.theme import THEMES


class MenusMixin:
    def _action(
        self,
        menu: QMenu,
        text: str,
        slot: Callable[[], object],
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
        name: str = "",
    ) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(lambda _checked=False: slot())
        if name:
            act.setObjectName(name)
        menu.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        SK = QKeySequence.StandardKey
        m = bar.addMenu("&File")
        self._action(m, "&Open Model…", self.open_model_dialog, SK.Open, "actionOpen")
        self.samples_menu = m.addMenu("Open &Sample")
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self.act_open_data = self._action(m, "Open &Data…", self.open_data_dialog, "Ctrl+D")
        self.act_input_sizes = self._action(m, "Input &Sizes…", self.ask_input_sizes)
        m.addSeparator()
        self.act_open_plan = self._action(m, "Open &Plan…", self.open_plan_dialog, "Ctrl+Shift+O")
        self.act_save_plan = self._action(m, "&Save Plan", self.save_plan, SK.Save, "actionSave")
        self.act_save_as = self._action(m, "Save Plan &As…", self.save_plan_as, SK.SaveAs)
        self.act_import = self._action(m, "&Import ORT Overrides…", self.import_overrides_dialog)
        self.act_export = self._action(m, "&Export ORT Overrides…", self.export_overrides_dialog)
        m.addSeparator()
        self.act_export_model = self._action(
            m, "Export &Quantized Model…", self.export_model_dialog, "Ctrl+E", "actionExportModel"
        )
        self._action(m, "Export Op&tions…", self.export_options_dialog)
        m.addSeparator()
        self.act_save_report = self._action(
            m, "Save &Report…", self.save_report_dialog, "Ctrl+Shift+R", "actionSaveReport"
        )
        self.act_compare_model = self._action(
            m, "Compare With &Model…", self.compare_with_model_dialog, name="actionCompareModel"
        )
        m.addSeparator()
        self._action(m, "&Quit", self.close, SK.Quit)
        self._fill_samples()

        m = bar.addMenu("&Edit")
        self.act_undo = self.document.undo_stack.createUndoAction(self, "&Undo")
        self.act_undo.setShortcuts(SK.Undo)  # every platform binding, not just the first
        self.act_undo.setObjectName("actionUndo")
        self.act_redo = self.document.undo_stack.createRedoAction(self, "&Redo")
        redo = QKeySequence.keyBindings(SK.Redo)
        for extra in ("Ctrl+Shift+Z", "Ctrl+Y"):  # both common spellings, everywhere
            if QKeySequence(extra) not in redo:
                redo.append(QKeySequence(extra))
        self.act_redo.setShortcuts(redo)
        self.act_redo.setObjectName("actionRedo")
        m.addAction(self.act_undo)
        m.addAction(self.act_redo)
        m.addSeparator()
        self.act_reset = self._action(m, "Reset Plan to &Float", self.reset_plan)

        m = bar.addMenu("&Tools")
        self.act_sweep = self._action(m, "Sensitivity &Sweep…", self.sweep_dialog, "Ctrl+R")
        self.act_find_plan = self._action(
            m, "&Find Plan…", self.show_search, "Ctrl+Shift+F", "actionFindPlan"
        )
        self.act_predict_size = self._action(
            m, "Predict Export &File Size", lambda: self.export_size.predict()
        )
        cal = m.addMenu("&Calibration")
        self.calibration_group = QActionGroup(self)
        for method in CalibrationMethod:
            act = QAction(method.value, self, checkable=True)
            act.setChecked(method.value == "minmax")
            act.triggered.connect(lambda _c=False, v=method.value: self.controller.recalibrate(v))
            self.calibration_group.addAction(act)
            cal.addAction(act)
        self.calibration_menu = cal
        m.addSeparator()
        self.act_cancel = self._action(m, "&Cancel Running Job", self.controller.cancel, "Esc")
        # Enabled only while a job can be cancelled, so Esc keeps closing editors otherwise.
        self.act_cancel.setEnabled(False)

        m = bar.addMenu("&Compare")
        self.act_pin = QAction("Pin Plan as &A", self, checkable=True)
        self.act_pin.setObjectName("actionPinA")
        self.act_pin.setIconText("Pin A")  # the table's tool button: short, for 1280 px
        self.act_pin.setShortcut(QKeySequence("Ctrl+Shift+A"))
        self.act_pin.setToolTip(
            "Keep the current plan and its numbers as A; every later plan (B) is shown next "
            "to it: Δ columns in the table, A's bars in the plots, A → B in the status bar"
        )
        self.act_pin.triggered.connect(self._on_pin_toggled)
        m.addAction(self.act_pin)
        self.act_unpin = self._action(m, "&Unpin A", self.unpin_plan_a, name="actionUnpinA")
        m.addSeparator()
        m.addAction(self.act_compare_model)

        m = bar.addMenu("&View")
        for dock in self.docks.values():
            m.addAction(dock.toggleViewAction())
        m.addSeparator()
        self.act_reset_layout = self._action(m, "Reset &Layout", self.reset_layout)
        m.addSeparator()
        theme = m.addMenu("&Theme")
        group = QActionGroup(self)
        current = self.settings.theme()
        for name in THEMES:
            act = QAction(name.capitalize(), self, checkable=True)
            act.setChecked(name == current)
            act.triggered.connect(lambda _c=False, n=name: self.set_theme(n))
            group.addAction(act)
            theme.addAction(act)

        m = bar.addMenu("&Help")
        self.act_format_reference = self._action(m, "&Format Reference", self.show_format_reference)
