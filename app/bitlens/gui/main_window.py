"""The Bitlens main window: menus, docks and the wiring between them.

The layer table is the central editor; the graph, plots, layer detail,
outputs and sweep results are docks that follow the one shared selection.
Every command either edits the plan through the document (undoable) or
starts a job through the controller (never blocking); failures land in the
message bar above the table.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QStackedWidget,
    QTabBar,
    QVBoxLayout,
    QWidget,
)

from bitlens.core import samples
from bitlens.core.dims import needed_dims, suggest_dims
from bitlens.core.engine import CalibrationMethod
from bitlens.core.errors import BitlensError
from bitlens.core.export.exporter import ExportOptions
from bitlens.core.export.fidelity import default_report_path
from bitlens.core.export.report import FidelityReport
from bitlens.core.formats import parse_format
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import Progress
from bitlens.core.search import Point
from bitlens.gui.activation_sandbox import apply_activation
from bitlens.gui.controller import Controller
from bitlens.gui.data_dialog import DataDialog
from bitlens.gui.dims_dialog import DimsDialog
from bitlens.gui.document import Document
from bitlens.gui.export_options import ExportOptionsDialog
from bitlens.gui.export_report import ExportReportDialog
from bitlens.gui.export_size_label import ExportSizeLabel
from bitlens.gui.format_help import FormatReferenceDialog
from bitlens.gui.graph_panel import GraphPanel
from bitlens.gui.jobs import Session
from bitlens.gui.layer_detail import LayerDetailView
from bitlens.gui.layer_table import LayerTable
from bitlens.gui.message_bar import MessageBar
from bitlens.gui.outputs_view import OutputsView
from bitlens.gui.plots_view import PlotsView
from bitlens.gui.runner import Job
from bitlens.gui.search_panel import SearchPanel
from bitlens.gui.settings import STATE_VERSION, AppSettings
from bitlens.gui.status_panel import StatusPanel
from bitlens.gui.sweep_dialog import SweepDialog
from bitlens.gui.sweep_view import SweepView
from bitlens.gui.theme import THEMES, apply_theme

MODEL_FILTER = "ONNX models (*.onnx);;All files (*)"
PLAN_FILTER = "Bitlens plans (*.json);;All files (*)"
WELCOME = (
    "<h2>Bitlens</h2><p>Open an ONNX model to choose a number format per layer<br>"
    "and see the error against the bytes saved.</p>"
    "<p>File ▸ Open (Ctrl+O), File ▸ Open Sample, or drop an .onnx file here.</p>"
)
# Failures that a later success of the same kind makes stale (by the words they start with)
EDIT_FAILURES = ("Evaluating", "Setting", "Applying preset")  # cleared by a good evaluation
FILE_FAILURES = ("Saving", "Opening the plan", "Importing", "Exporting ORT")  # by a good save/open
DEFAULT_SIZE = (1400, 880)  # shrunk to the screen's free area when that is smaller
MIN_SIDE_PANE = 220  # a restored side pane narrower than this gets this width back


class MainWindow(QMainWindow):
    def __init__(
        self,
        settings: AppSettings | None = None,
        device: str = "auto",
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.export_report: ExportReportDialog | None = None  # the last export's report
        self.format_reference: FormatReferenceDialog | None = None
        self.export_options = ExportOptions()  # File ▸ Export Options
        self.export_report_dir: Path | None = None  # None: the report goes next to the export
        self.setObjectName("bitlensMainWindow")
        self.settings = settings if settings is not None else AppSettings()
        self.document = Document(self)
        self.controller = Controller(self.document, self, device=device)
        self.runner = self.controller.runner
        self._closing = False
        self._shown = False
        self._restored = False  # a saved layout was restored
        self.setAcceptDrops(True)
        self._fit_to_screen()

        # central: message bar over the welcome page / layer table
        self.message_bar = MessageBar(self)
        self.dims_dialog: DimsDialog | None = None  # the input-sizes dialog, while open
        self.table = LayerTable(self.document, self)
        self.welcome = QLabel(WELCOME, self)
        self.welcome.setObjectName("welcome")
        self.welcome.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.table)
        central = QWidget(self)
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.message_bar)
        cl.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        # docks
        self.graph = GraphPanel(self.document, self)
        self.plots = PlotsView(self.document, self)
        self.detail = LayerDetailView(self)
        self.outputs = OutputsView(self.document, self)
        self.sweep = SweepView(self.document, self)
        self.search = SearchPanel(self)
        self.docks: dict[str, QDockWidget] = {}
        area = Qt.DockWidgetArea
        self._dock("graph", "Graph", self.graph, area.LeftDockWidgetArea)
        self._dock("detail", "Layer detail", self.detail, area.RightDockWidgetArea)
        self._dock("outputs", "Outputs", self.outputs, area.RightDockWidgetArea)
        self._dock("plots", "Error and size per layer", self.plots, area.BottomDockWidgetArea)
        self._dock("sweep", "Sweep results", self.sweep, area.BottomDockWidgetArea)
        self._dock("search", "Find plan", self.search, area.BottomDockWidgetArea)
        self.tabifyDockWidget(self.docks["detail"], self.docks["outputs"])
        self.tabifyDockWidget(self.docks["plots"], self.docks["sweep"])
        self.tabifyDockWidget(self.docks["plots"], self.docks["search"])
        self.docks["search"].hide()  # Tools ▸ Find Plan shows it
        self.docks["detail"].raise_()
        self.docks["plots"].raise_()

        self.status = StatusPanel(self)
        self.statusBar().addPermanentWidget(self.status, 1)
        # the export options change the file: predict with those every export uses (File ▸
        # Export Options, where this window has them)
        self.export_size = ExportSizeLabel(
            self.controller, self, options=lambda: getattr(self, "export_options", None)
        )
        self.statusBar().addPermanentWidget(self.export_size)  # a tip never hides it

        self._build_menus()
        self._connect()
        self._default_state = self.saveState(STATE_VERSION)  # what View ▸ Reset Layout restores
        self._size_docks()
        self._restore_layout()
        self._update_title()
        self._update_actions()

    # -- construction -----------------------------------------------------------------------------
    def _fit_to_screen(self) -> None:
        """Open at a comfortable size that never exceeds the screen's free area (a laptop's
        1366x768 keeps its status bar on screen)."""
        screen = self.screen() or QApplication.primaryScreen()
        w, h = DEFAULT_SIZE
        if screen is not None:
            free = screen.availableGeometry()
            # the frame and title bar take some pixels the geometry does not count
            w, h = min(w, free.width() - 16), min(h, free.height() - 48)
        self.resize(max(w, 640), max(h, 480))

    def _size_docks(self) -> None:
        """Share the width and height between the panes in proportion to the window."""
        width, height = max(self.width(), 800), max(self.height(), 500)
        side = [self.docks["graph"], self.docks["detail"]]
        self.resizeDocks(side, [int(width * 0.2), int(width * 0.3)], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["plots"]], [int(height * 0.33)], Qt.Orientation.Vertical)

    def reset_layout(self) -> None:
        """View ▸ Reset Layout: every pane back where and how big it first was."""
        for dock in self.docks.values():
            dock.setFloating(False)
        self.restoreState(self._default_state, STATE_VERSION)
        for dock in self.docks.values():
            dock.show()
        self.docks["detail"].raise_()
        self.docks["plots"].raise_()
        self._size_docks()

    def _unstick_docks(self) -> None:
        """A restored layout may have squeezed a side pane to a sliver (the window once
        shrank): give any visible, docked pane below a usable width its share back."""
        narrow = [
            d for d in self.docks.values()
            if d.isVisible() and not d.isFloating()
            and self.dockWidgetArea(d) in (Qt.DockWidgetArea.LeftDockWidgetArea,
                                           Qt.DockWidgetArea.RightDockWidgetArea)
            and d.width() < MIN_SIDE_PANE
        ]  # fmt: skip
        if narrow:
            self.resizeDocks(narrow, [MIN_SIDE_PANE] * len(narrow), Qt.Orientation.Horizontal)

    def _hide_stale_tab_bars(self) -> None:
        """Qt can leave a tab bar of the tabbed docks from the layout before the first
        resize visible on top of a pane (seen offscreen at 1920x1080, drawn over the
        plots' toolbar): the tab bars in use sit next to the docks, never over one."""
        docks = [d.geometry() for d in self.docks.values() if d.isVisible() and not d.isFloating()]
        for bar in self.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if bar.isVisible() and any(bar.geometry().intersects(g) for g in docks):
                bar.hide()

    def _dock(self, key: str, title: str, widget: QWidget, where: Qt.DockWidgetArea) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{key}")
        dock.setWidget(widget)
        self.addDockWidget(where, dock)
        self.docks[key] = dock

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

    def _connect(self) -> None:
        doc, ctl, runner = self.document, self.controller, self.runner
        ctl.failed.connect(self.message_bar.show_error)
        self.table.editFailed.connect(self.message_bar.show_error)
        ctl.opened.connect(self._on_opened)
        ctl.detailChanged.connect(self.detail.show_detail)
        doc.selection.changed.connect(self._on_selection_for_detail)
        ctl.sweepFinished.connect(self._on_sweep_finished)
        ctl.exported.connect(self._on_exported)
        ctl.calibrated.connect(self._on_calibrated)
        ctl.dimsNeeded.connect(self.ask_input_sizes)
        ctl.nonfinite.connect(lambda text: self.message_bar.show_message(
            f"Warning: {text}.", "warning"))  # fmt: skip
        self.detail.formatPicked.connect(self.set_weight_format)
        self.detail.act_sandbox.picked.connect(partial(apply_activation, doc, self.message_bar))
        self.sweep.formatPicked.connect(self.set_weight_format)
        doc.modelChanged.connect(self._on_model_changed)
        doc.planChanged.connect(self._on_plan_changed)
        doc.evaluationChanged.connect(self._on_evaluation)
        doc.undo_stack.cleanChanged.connect(self._update_title)
        runner.started.connect(self._on_job_started)
        runner.progressed.connect(self._on_progress)
        runner.busyChanged.connect(self._on_busy_changed)
        runner.cancelled.connect(self._on_cancelled)
        self.status.cancelRequested.connect(ctl.cancel)
        self.search.runRequested.connect(ctl.run_search)
        self.search.cancelRequested.connect(ctl.cancel)
        self.search.applyRequested.connect(self.apply_search_point)
        self.search.failed.connect(self.message_bar.show_error)
        ctl.searchStarted.connect(self.search.started)
        ctl.searchPoint.connect(self.search.add_point)
        ctl.searchFinished.connect(self.search.finished)
        runner.progressed.connect(
            lambda job, prog: self.search.show_progress(prog) if job.key == "search" else None
        )
        self.table.pinRequested.connect(self.pin_layers)
        self.docks["outputs"].visibilityChanged.connect(self._on_outputs_visible)

    # -- opening ----------------------------------------------------------------------------------
    def open_model(self, path: str | Path) -> Job | None:
        if not self._confirm_discard("open another model"):
            return None
        self.message_bar.hide()
        return self.controller.open_model(path, dims=self.settings.model_dims(Path(path)))

    def open_sample(self, name: str) -> Job | None:
        if not self._confirm_discard("open another model"):
            return None
        self.message_bar.hide()
        return self.controller.open_sample(name)

    def open_default(self) -> Job | None:
        """The bundled image sample, as ``bitlens`` with no arguments opens."""
        return self.open_sample(samples.DEFAULT_SAMPLE)

    def open_model_dialog(self) -> None:
        recent = self.settings.recent_models()
        start = str(recent[0].parent) if recent else ""
        path, _ = QFileDialog.getOpenFileName(self, "Open ONNX model", start, MODEL_FILTER)
        if path:
            self.open_model(path)

    def open_data_dialog(self) -> None:
        info = self.document.info
        if info is None:
            return
        session = self.document.session
        data = None if session is None else session.data
        feed = data.samples[data.evaluation[0]] if data is not None else None
        remembered = self.settings.model_dims(session.path) if session and session.path else {}
        request = DataDialog.ask(info, self, dims=suggest_dims(info, feed, remembered))
        if request is not None:
            self.controller.open_data(request)

    def ask_input_sizes(self) -> DimsDialog | None:
        """Open (without blocking) the dialog of the model's dynamic input sizes."""
        session = self.document.session
        if session is None or not needed_dims(session.info):
            return None
        if self.dims_dialog is not None and self.dims_dialog.isVisible():
            return self.dims_dialog
        data = session.data
        feed = data.samples[data.evaluation[0]] if data is not None else None
        remembered = self.settings.model_dims(session.path) if session.path else {}
        dlg = DimsDialog(session.info, suggest_dims(session.info, feed, remembered), self)
        dlg.accepted.connect(lambda: self._on_input_sizes(dlg, session))
        dlg.rejected.connect(self._on_input_sizes_declined)
        self.dims_dialog = dlg
        dlg.open()
        return dlg

    def _on_input_sizes(self, dlg: DimsDialog, asked_for: Session) -> None:
        session = self.document.session
        if session is None or session.model is not asked_for.model:
            return  # another model was opened meanwhile
        dims = dlg.dims()
        if session.path is not None:
            self.settings.set_model_dims(session.path, dims)
        self.controller.set_input_sizes(dims)

    def _on_input_sizes_declined(self) -> None:
        session = self.document.session
        if session is not None and session.data is None:
            self.message_bar.show_message(
                "Weights only: activation and output errors need input sizes "
                "(File ▸ Input Sizes…) or data (File ▸ Open Data…).",
                "info",
            )

    def _fill_samples(self) -> None:
        self.samples_menu.clear()
        try:
            found = samples.list_samples()
        except BitlensError as exc:  # resources not installed: say so in the menu
            act = self.samples_menu.addAction("No samples found")
            act.setEnabled(False)
            act.setToolTip(str(exc))
            return
        for sample in found:
            act = self.samples_menu.addAction(
                f"{sample.title} ({sample.domain})", lambda n=sample.name: self.open_sample(n)
            )
            act.setToolTip(str(sample.meta.get("description", "")))

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent_models()
        for p in recent:
            self.recent_menu.addAction(str(p), lambda p=p: self.open_model(p))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear List", self.settings.clear_recent_models)
        else:
            act = self.recent_menu.addAction("No recent models")
            act.setEnabled(False)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if _dropped_model(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        path = _dropped_model(event)
        if path is not None:
            event.acceptProposedAction()
            self.open_model(path)

    def _on_opened(self, what: object) -> None:
        if isinstance(what, Path):
            self.settings.add_recent_model(what)
        info = self.document.info
        if info is not None and info.notes:  # what the loader did in memory (IR version, folding)
            self.message_bar.show_message(info.notes[0], "info", "\n".join(info.notes))

    def _on_model_changed(self) -> None:
        session = self.document.session
        self.search.reset(None if session is None else session.model.nbytes)
        self.stack.setCurrentWidget(self.table if session is not None else self.welcome)
        self.status.show_providers(() if session is None else session.providers)
        self.status.show_evaluation(None, stale=False)
        dlg = self.dims_dialog
        if dlg is not None and (session is None or dlg.info is not session.info):
            dlg.blockSignals(True)  # sizes asked for the previous model: drop them quietly
            dlg.reject()
            self.dims_dialog = None
        data = None if session is None else session.data
        self.status.show_data(
            None if data is None else data.summary(), is_open=session is not None
        )
        for act in self.calibration_group.actions():
            act.setChecked(act.text() == self.controller.calibration)
        self._update_title()
        self._update_actions()

    # -- plan ---------------------------------------------------------------------------------------
    def set_weight_format(self, layer: str, fmt: str) -> None:
        """Apply one weight format to one layer (from the sandbox or the sweep table)."""
        plan = self.document.plan
        if plan is None:
            return
        try:
            old = plan[layer]
            new = LayerChoice(parse_format(fmt), old.activation, old.dynamic)
            self.document.edit({layer: new}, f"{layer}: weights → {fmt}")
        except (BitlensError, KeyError) as exc:
            self.message_bar.show_error(f"Setting {layer} weights to {fmt}", exc)

    def show_search(self) -> None:
        """Tools ▸ Find Plan: show the search panel."""
        dock = self.docks["search"]
        dock.show()
        dock.raise_()

    def pin_layers(self, names: list[str]) -> None:
        """Pin layers at their current choice for the plan search (from the table's menu)."""
        plan = self.document.plan
        if plan is None:
            return
        self.search.pin(plan, names)
        self.show_search()

    def apply_search_point(self, point: Point) -> None:
        """Make a searched plan current as one undoable step; select the layers it changed."""
        plan = self.document.plan
        if plan is None or point.plan.info is not plan.info:
            return
        changed = [n for n in plan if plan[n] != point.plan[n]]
        text = f"Apply searched plan ({point.file_bytes} B, error {point.error:.3g})"
        try:
            self.document.replace_plan(point.plan, text)
        except BitlensError as exc:
            self.message_bar.show_error("Applying the searched plan", exc)
            return
        self.search.plot.mark(point)
        if changed:
            self.document.selection.set(changed, changed[0], origin=self.search)
        self.message_bar.show_message(
            f"Applied a searched plan: {len(changed)} layers changed (selected in the table). "
            "Edit ▸ Undo goes back.",
            "info",
        )

    def reset_plan(self) -> None:
        info = self.document.info
        if info is not None:
            self.document.replace_plan(Plan(info), "Reset plan to float")

    def _plan_dir(self) -> str:
        doc = self.document
        if doc.plan_path is not None:
            return str(doc.plan_path)
        session = doc.session
        if session is not None and session.path is not None:
            return str(session.path.with_suffix(".plan.json"))
        return ""

    def save_plan(self) -> bool:
        if self.document.plan_path is None:
            return self.save_plan_as()
        return self._succeeded(self.controller.save_plan(self.document.plan_path))

    def _succeeded(self, ok: bool) -> bool:
        if ok:
            self._clear_stale_error(FILE_FAILURES)
        return ok

    def save_plan_as(self) -> bool:
        if self.document.plan is None:
            return False
        path, _ = QFileDialog.getSaveFileName(self, "Save plan", self._plan_dir(), PLAN_FILTER)
        if not path:
            return False
        return self._succeeded(self.controller.save_plan(path))

    def open_plan_dialog(self) -> None:
        if self.document.plan is None:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Open plan", self._plan_dir(), PLAN_FILTER)
        if path:
            self._succeeded(self.controller.load_plan(path))

    def import_overrides_dialog(self) -> None:
        if self.document.plan is None:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Import ONNX Runtime TensorQuantOverrides", "", "JSON (*.json);;All files (*)"
        )
        if path:
            self.controller.import_ort_overrides(path)

    def export_overrides_dialog(self) -> None:
        if self.document.plan is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export ONNX Runtime TensorQuantOverrides", "", "JSON (*.json);;All files (*)"
        )
        if not path:
            return
        left_out = self.controller.export_ort_overrides(path)
        if left_out:
            self.message_bar.show_message(
                f"Exported to {Path(path).name}; {len(left_out)} choices have no ONNX Runtime "
                "quant_type and were left out (see Details).",
                "warning",
                "\n".join(left_out),
            )

    def _on_plan_changed(self) -> None:
        self.status.show_evaluation(self.document.evaluation, stale=True)
        self._update_title()

    def _on_evaluation(self) -> None:
        ev = self.document.evaluation
        doc = self.document
        self.status.show_evaluation(
            ev, stale=not doc.evaluation_current, failed=doc.evaluation_failed
        )
        if ev is not None and ev.providers:
            self.status.show_providers(ev.providers)
        if ev is not None and doc.evaluation_current and not doc.evaluation_failed:
            self._clear_stale_error(EDIT_FAILURES)

    def _clear_stale_error(self, kinds: tuple[str, ...]) -> None:
        """A success after a failure of the same kind (the action's words start with one of
        ``kinds``): the failure's message no longer describes the window."""
        bar = self.message_bar
        if bar.isVisible() and bar.level == "error" and bar.what.startswith(kinds):
            bar.hide()

    # -- tools ---------------------------------------------------------------------------------------
    def sweep_dialog(self) -> None:
        if self.document.session is None:
            return
        session = self.document.session
        data = session.data
        choice = SweepDialog.ask(
            self.document.selection.names,
            self,
            n_layers=len(session.info.layers),
            n_samples=None if data is None else len(data.evaluation),
        )
        if choice is not None:
            self.controller.run_sweep(*choice)

    def export_model_dialog(self) -> None:
        session = self.document.session
        if session is None or self.document.plan is None:
            return
        # Next to the model when it is the user's; samples live in the install, so use home.
        folder = session.path.parent if session.path and session.request else Path.home()
        stem = session.path.stem if session.path else "model"
        self.export_size.predict()  # the file it will write, in the worker while the user picks
        path, _ = QFileDialog.getSaveFileName(
            self, "Export quantized model", str(folder / f"{stem}.quant.onnx"), MODEL_FILTER
        )
        if path:
            report = None
            if self.export_report_dir is not None:
                report = self.export_report_dir / default_report_path(path).name
            self.controller.export_model(path, self.export_options, report)

    def export_options_dialog(self) -> ExportOptionsDialog:
        """File ▸ Export Options (not modal; applies when OK is pressed)."""
        dlg = ExportOptionsDialog(self.export_options, self.export_report_dir, self)

        def accepted() -> None:
            self.export_options = dlg.options(self.export_options)
            self.export_report_dir = dlg.chosen_report_dir()

        dlg.accepted.connect(accepted)
        dlg.open()
        return dlg

    def _on_exported(self, report: FidelityReport) -> None:
        verdict = "fidelity check passed" if report.passed else "fidelity check FAILED"
        self.message_bar.show_message(
            f"Exported {report.export}: {verdict}.", "info" if report.passed else "error"
        )
        self.export_report = ExportReportDialog(report, self)
        self.export_report.show()

    def _on_sweep_finished(self, entries: list) -> None:
        self.sweep.show_entries(entries)
        self.docks["sweep"].show()
        self.docks["sweep"].raise_()

    def _on_selection_for_detail(self, _origin: object) -> None:
        current = self.document.selection.current
        shown = self.detail.detail
        if current is None or (shown is not None and shown.layer == current):
            return
        running = self.runner.running
        waiting = None if running is None or running.key == "detail" else running.label
        self.detail.show_pending(current, waiting)

    def _on_calibrated(self, method: str) -> None:
        for act in self.calibration_group.actions():
            act.setChecked(act.text() == method)

    def _on_outputs_visible(self, visible: bool) -> None:
        self.controller.want_outputs = visible
        if visible and self.document.evaluation_current and not self.document.outputs:
            self.controller.request_outputs()

    # -- busy state ---------------------------------------------------------------------------------
    def _on_job_started(self, job: Job) -> None:
        self.status.set_busy(job.label, quiet=job.quiet, cancellable=job.cancellable)
        self.act_cancel.setEnabled(job.cancellable and not job.quiet)

    def _on_progress(self, _job: Job, progress: Progress) -> None:
        self.status.show_progress(progress)

    def _on_busy_changed(self, busy: bool) -> None:
        if not busy:
            self.status.set_idle()
            self.act_cancel.setEnabled(False)

    def _on_cancelled(self, job: Job) -> None:
        if not job.quiet:
            self.message_bar.show_message(f"Cancelled: {job.label}.", "info")

    def show_format_reference(self) -> FormatReferenceDialog:
        """Help ▸ Format Reference (not modal: it can stay open next to the table)."""
        if self.format_reference is None:
            self.format_reference = FormatReferenceDialog(self)
        self.format_reference.show()
        self.format_reference.raise_()
        return self.format_reference

    # -- window -----------------------------------------------------------------------------------------
    def set_theme(self, name: str) -> None:
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, name)
        self.settings.set_theme(name)

    def _update_title(self, *_args: object) -> None:
        session: Session | None = self.document.session
        name = "" if session is None else f"{session.title}[*] — "
        self.setWindowTitle(f"{name}Bitlens")
        self.setWindowModified(self.document.is_modified)

    def _update_actions(self) -> None:
        has = self.document.is_open
        for act in (
            self.act_open_data, self.act_open_plan, self.act_save_plan, self.act_save_as,
            self.act_import, self.act_export, self.act_reset, self.act_sweep,
            self.act_export_model, self.act_find_plan, self.act_predict_size,
        ):  # fmt: skip
            act.setEnabled(has)
        self.calibration_menu.setEnabled(has)
        info = self.document.info
        self.act_input_sizes.setEnabled(info is not None and bool(needed_dims(info)))

    def _restore_layout(self) -> None:
        geometry, state = self.settings.window_layout()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self._restored = self.restoreState(state, STATE_VERSION)

    def _confirm_discard(self, action: str) -> bool:
        """Ask before losing unsaved plan edits; True when it is fine to go on."""
        if not self.document.is_modified:
            return True
        answer = QMessageBox.question(
            self,
            "Unsaved plan",
            f"The plan has unsaved changes. Save them before you {action}?",
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.save_plan()
        return answer == QMessageBox.StandardButton.Discard

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown:
            self._shown = True
            # widths are only real once laid out: share them out (or check the restored
            # panes) after this show
            QTimer.singleShot(0, self._unstick_docks if self._restored else self._size_docks)
            QTimer.singleShot(0, self._hide_stale_tab_bars)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closing and not self._confirm_discard("close"):
            event.ignore()
            return
        self._closing = True
        self.settings.set_window_layout(self.saveGeometry(), self.saveState(STATE_VERSION))
        self.settings.sync()
        # Quit workers and wait for them: nothing may run on after the window is gone.
        self.controller.shutdown()
        event.accept()


def _dropped_model(event: QDragEnterEvent | QDropEvent) -> Path | None:
    mime = event.mimeData()
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and url.toLocalFile().lower().endswith(".onnx"):
            return Path(url.toLocalFile())
    return None
