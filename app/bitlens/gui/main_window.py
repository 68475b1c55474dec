"""The Bitlens main window: its panes and the wiring between them.

The layer table is the central editor; the graph, plots, layer detail,
outputs and sweep results are docks that follow the one shared selection.
Every command either edits the plan through the document (undoable) or
starts a job through the controller (never blocking); failures land in the
message bar above the table. The menus (``window_menus``), the file commands
(``window_files``) and the panes' layout (``window_layout``) are mixins of
their own; this module builds the panes and routes the events between them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QLabel,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.dims import needed_dims
from bitlens.core.errors import BitlensError
from bitlens.core.export.checklist import Verdict, checklist, counts, summary
from bitlens.core.export.exporter import ExportOptions
from bitlens.core.export.report import FidelityReport
from bitlens.core.formats import parse_format
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery.support import kept_recovery
from bitlens.core.results import Progress
from bitlens.core.search import Point
from bitlens.gui import lock_switch
from bitlens.gui.ab_compare import ABStatusLabel
from bitlens.gui.activation_sandbox import apply_activation
from bitlens.gui.controller import Controller
from bitlens.gui.deployed_view import DeployedMode
from bitlens.gui.dims_dialog import DimsDialog
from bitlens.gui.document import Document
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
from bitlens.gui.theme import apply_theme
from bitlens.gui.window_compare import CompareCommandsMixin
from bitlens.gui.window_files import WEIGHTS_ONLY, FileCommandsMixin
from bitlens.gui.window_layout import LayoutMixin
from bitlens.gui.window_menus import MenusMixin

WELCOME = (
    "<h2>Bitlens</h2><p>Open an ONNX model to choose a number format per layer<br>"
    "and see the error against the bytes saved.</p>"
    "<p>File ▸ Open (Ctrl+O), File ▸ Open Sample, or drop an .onnx file here.</p>"
)
# Failures that a later success of the same kind makes stale (by the words they start with)
EDIT_FAILURES = ("Evaluating", "Setting", "Applying preset")  # cleared by a good evaluation


class MainWindow(MenusMixin, FileCommandsMixin, CompareCommandsMixin, LayoutMixin, QMainWindow):
    def __init__(
        self,
        settings: AppSettings | None = None,
        device: str = "auto",
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        lock_switch.window_opened()  # Qt's calls into Python here wait ~1 ms, not 5, on a job
        self._lock_switched = True
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
        self.detail = LayerDetailView(self, self.document.view_passes)
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
        self.ab_status = ABStatusLabel(self.document.ab, self)  # A → B, while A is pinned
        self.statusBar().addPermanentWidget(self.ab_status)
        self.deployed = DeployedMode(self)  # the "As deployed" pane, its status and job

        self._build_menus()
        self.pin_button = self.table.add_tool_action(self.act_pin)
        self._connect()
        self._default_state = self.saveState(STATE_VERSION)  # what View ▸ Reset Layout restores
        self._size_docks()
        self._restore_layout()
        self._update_title()
        self._update_actions()



    def _connect(self) -> None:
        doc, ctl, runner = self.document, self.controller, self.runner
        ctl.failed.connect(self.message_bar.show_error)
        doc.ab.changed.connect(self._update_compare_actions)
        self.detail.codes.requested.connect(ctl.request_codes)
        ctl.codesReady.connect(self.detail.codes.on_codes)
        self.table.editFailed.connect(self.message_bar.show_error)
        ctl.opened.connect(self._on_opened)
        ctl.detailChanged.connect(self._on_detail_changed)
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
        # a sweep's activation entry: static, as the sweep measured it (calibrated range)
        self.sweep.activationPicked.connect(
            lambda layer, fmt: apply_activation(doc, self.message_bar, layer, fmt, False)
        )
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
        ctl.searchMeasuring.connect(self.search.measuring)
        ctl.searchFailed.connect(self.search.mark_failed)
        ctl.searchFinished.connect(self.search.finished)
        runner.progressed.connect(
            lambda job, prog: self.search.show_progress(prog) if job.key == "search" else None
        )
        self.table.pinRequested.connect(self.pin_layers)
        self.docks["outputs"].visibilityChanged.connect(self._on_outputs_visible)

    def _on_model_changed(self) -> None:
        session = self.document.session
        self.search.reset(None if session is None else session.model_bytes)
        self.stack.setCurrentWidget(self.table if session is not None else self.welcome)
        self.status.show_providers(() if session is None else session.providers)
        self.status.set_model(None if session is None else session.info)
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
        bar = self.message_bar
        if data is not None and bar.isVisible() and bar.what == WEIGHTS_ONLY:
            bar.hide()  # said when the sizes were declined; data has come since
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
            old, weight = plan[layer], parse_format(fmt)
            keep = kept_recovery(self.document.layer(layer), weight, old.recovery)
            new = LayerChoice(weight, old.activation, old.dynamic, keep)
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
        fitted = self.search.fitted_rows()  # the plot's error, where not on every row
        where = f" The plot's error is{fitted}; the status bar's on all of them." if fitted else ""
        self.message_bar.show_message(
            f"Applied a searched plan: {len(changed)} layers changed (selected in the table). "
            f"Edit ▸ Undo goes back.{where}",
            "info",
        )

    def reset_plan(self) -> None:
        info = self.document.info
        if info is not None:
            self.document.replace_plan(Plan(info), "Reset plan to float")

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
            metric=None if self.controller.metric is None else self.controller.metric.name,
        )
        if choice is not None:
            self.controller.run_sweep(*choice)

    def _on_exported(self, report: FidelityReport) -> None:
        # the report's own summary: open_nsfw's searched plan read "passed" here while its
        # report warned that the export ran x1.10 float's time
        rows = checklist(report)
        warned = counts(rows)[Verdict.WARNING] > 0
        level = "error" if not report.passed else "warning" if warned else "info"
        self.message_bar.show_message(f"Exported {report.export}: {summary(report, rows)}.", level)
        if self.document.ran_as_plan is not None:  # the plan exported (the controller's)
            self.export_size.show_exported(self.document.ran_as_plan, report)
        data = None if self.document.session is None else self.document.session.data
        rows = None if data is None else data.summary().evaluation.rows
        self.export_report = ExportReportDialog(report, self, rows=rows)
        self.export_report.show_later(self.document.view_passes)  # after this pass's repaints

    def _on_sweep_finished(self, entries: list) -> None:
        self.sweep.show_entries(entries, self.controller.sweep_metric)
        self.docks["sweep"].show()
        self.docks["sweep"].raise_()

    def _on_detail_changed(self, detail: object) -> None:
        current = self.document.selection.current
        if detail is None and current is not None and self.runner.busy:
            self.detail.show_pending(current, None)  # asked for again (other data): coming
        else:
            self.detail.show_later(detail)

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
        self._update_compare_actions()
        has = self.document.is_open
        for act in (
            self.act_open_data, self.act_open_plan, self.act_save_plan, self.act_save_as,
            self.act_import, self.act_export, self.act_reset, self.act_sweep,
            self.act_export_model, self.act_find_plan, self.act_predict_size, self.act_deployed,
        ):  # fmt: skip
            act.setEnabled(has)
        self.calibration_menu.setEnabled(has)
        info = self.document.info
        self.act_input_sizes.setEnabled(info is not None and bool(needed_dims(info)))

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
        if self._lock_switched:
            self._lock_switched = False
            lock_switch.window_closed()

