"""The window's "as deployed" mode: the plan exported and run in ONNX Runtime, layer by layer.

Tools ▸ Evaluate As Deployed (or the pane's button) runs
:meth:`bitlens.core.export.asdeployed.DeployedRunner.run` as a job on the
window's runner (off the UI thread, progress and Cancel in the status bar):
the plan is exported with the window's export options into a cached default
ONNX Runtime session, its outputs are the deployed model's bit for bit, and
each layer's output in ONNX Runtime's optimized graph is compared with the
fake-quant simulation. The pane labels every number with the run it came
from; the status bar shows the deployed output error next to the simulated
one. A plan edit makes the shown run stale (it says so) until run again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.errors import DataError
from bitlens.core.export.asdeployed import DeployedReport, DeployedRunner
from bitlens.core.export.exporter import ExportOptions
from bitlens.gui.runner import Job
from bitlens.gui.text import fmt_db

if TYPE_CHECKING:
    from bitlens.core.engine import Engine
    from bitlens.gui.main_window import MainWindow

JOB_KEY = "deployed"
SIMULATED = "simulated (fake-quant, the engine)"
DEPLOYED = "deployed (the export in a default ONNX Runtime session)"
COLUMNS = ("Layer", "Compared", "Deployed vs simulated", "SQNR vs simulated")


class DeployedPane(QWidget):
    """Per output and per layer: the simulation's numbers, the deployed model's, and their
    difference. Rows follow the window's one selection."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("deployedPane")
        self.run_button = QPushButton("Run as deployed", self)
        self.run_button.setObjectName("deployedRun")
        self.run_button.setToolTip(
            "Export the plan, run it in a default ONNX Runtime session (its integer kernels) "
            "and compare it with the simulation, layer by layer"
        )
        self.state = QLabel("Not run: the numbers elsewhere are the simulation's.", self)
        self.state.setObjectName("deployedState")
        self.state.setWordWrap(True)
        self.outputs = QLabel(self)
        self.outputs.setObjectName("deployedOutputs")
        self.outputs.setWordWrap(True)
        self.outputs.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("deployedLayers")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)  # whole title
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.run_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.state)
        layout.addWidget(self.outputs)
        layout.addWidget(self.table, 1)
        self.report: DeployedReport | None = None

    def show_report(
        self,
        report: DeployedReport | None,
        *,
        stale: bool = False,
        short: Mapping[str, str] | None = None,
    ) -> None:
        """``short``: the model's short layer names (ModelInfo.short_names) for the Layer
        column; the full name is the cell's tooltip and what selection reads."""
        self.report = report
        if report is None:
            self.state.setText("Not run: the numbers elsewhere are the simulation's.")
            self.outputs.setText("")
            self.table.setRowCount(0)
            return
        self.set_stale(stale)
        lines = []
        for o in report.outputs:
            same = "bit-exact" if o.exact else f"max |Δ| {o.max_abs_difference:.3g}"
            lines.append(
                f"<b>{o.name}</b>: SQNR against float, {SIMULATED}: "
                f"{fmt_db(o.simulated.sqnr_db)}; {DEPLOYED}: {fmt_db(o.deployed.sqnr_db)}; "
                f"deployed vs simulated: {same}"
            )
        if not report.layers_verified:
            lines.append(
                "Layer values unverified: ONNX Runtime's optimized graph, re-run as saved, did "
                "not reproduce the deployed outputs."
            )
        self.outputs.setText("<br>".join(lines))
        self.table.setRowCount(len(report.layers))
        for r, la in enumerate(report.layers):
            compared = {"codes": "requantized output (codes)", "float": "float output"}
            cells = (
                la.layer,
                f"{compared.get(la.kind, 'fused')}: {la.tensor}",
                la.describe(),
                fmt_db(la.sqnr_db),
            )
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c == 0:
                    item.setText((short or {}).get(text, text))
                    item.setData(Qt.ItemDataRole.UserRole, text)
                    item.setToolTip(text)
                elif la.kind == "codes" and la.max_lsb is not None and la.max_lsb > 1:
                    item.setToolTip("more than one step: rounding of the integer kernels added up")
                self.table.setItem(r, c, item)
        self.table.resizeColumnToContents(0)
        self.table.resizeColumnToContents(1)

    def set_stale(self, stale: bool) -> None:
        if self.report is None:
            return
        providers = ", ".join(self.report.providers)
        self.state.setText(
            ("Stale: the plan changed since this run. " if stale else "")
            + f"As deployed on {providers}: every row compares {DEPLOYED} with {SIMULATED}."
        )

    def select_layer(self, name: str | None) -> None:
        if self.report is None or name is None:
            return
        for r in range(self.table.rowCount()):
            item = self.table.item(r, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == name:
                # One row, whatever keys are held: QTableView.selectRow builds its command
                # from the keyboard's modifiers, so with Shift down (a Shift-click on the
                # graph) it extended the selection from the table's anchor instead.
                flags = (
                    QItemSelectionModel.SelectionFlag.ClearAndSelect
                    | QItemSelectionModel.SelectionFlag.Rows
                )
                self.table.blockSignals(True)
                self.table.selectionModel().setCurrentIndex(self.table.model().index(r, 0), flags)
                self.table.blockSignals(False)
                self.table.scrollToItem(item)
                return


class DeployedMode:
    """Wires the pane, the Tools menu action and a status-bar label to the window's jobs."""

    def __init__(self, window: MainWindow):
        self.main_window = window
        self.pane = DeployedPane(window)
        self.status = QLabel(window)
        self.status.setObjectName("statusDeployed")
        self.status.setToolTip(f"Output SQNR against float: {DEPLOYED} and {SIMULATED}")
        self.status.hide()
        window.statusBar().addPermanentWidget(self.status)
        dock = QDockWidget("As deployed", window)
        dock.setObjectName("dock_deployed")
        dock.setWidget(self.pane)
        # With the bottom panes: a third tab beside the layer detail would widen the right
        # area's tab bar past what a 1280 px window leaves it.
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        window.docks["deployed"] = dock
        window.tabifyDockWidget(window.docks["plots"], dock)
        window.docks["plots"].raise_()  # the error plots stay the bottom area's first view
        self.action: QAction | None = None
        self._runner: DeployedRunner | None = None
        self._runner_key: tuple[Engine, ExportOptions] | None = None
        self.pane.run_button.clicked.connect(self.run)
        self.pane.table.itemSelectionChanged.connect(self._on_row)
        doc = window.document
        doc.planChanged.connect(self._on_plan_changed)
        doc.modelChanged.connect(self._on_model_changed)
        doc.selection.changed.connect(self._on_selection)

    def dock(self) -> QDockWidget:
        return self.main_window.docks["deployed"]

    def add_action(self, menu: QMenu) -> QAction:
        self.action = QAction("Evaluate As &Deployed", self.main_window)
        self.action.setObjectName("actionEvaluateDeployed")
        self.action.triggered.connect(lambda _c=False: self.run())
        menu.addAction(self.action)
        return self.action

    # -- running ----------------------------------------------------------------------------
    def run(self) -> Job | None:
        """Start the as-deployed evaluation of the current plan (a cancellable job)."""
        w = self.main_window
        session, plan = w.document.session, w.document.plan
        if session is None or plan is None:
            return None
        if session.data is None:
            w.message_bar.show_error(
                "Evaluating as deployed",
                DataError("it needs input data: give the input sizes or open data first"),
            )
            return None
        runner = self._runner_for(session.engine, w.export_options)
        dock = self.dock()
        dock.show()
        dock.raise_()
        return w.runner.submit(
            Job(JOB_KEY, "Evaluating as deployed", runner.run, (plan,),
                on_result=self._on_result)
        )  # fmt: skip

    def _runner_for(self, engine: Engine, options: ExportOptions) -> DeployedRunner:
        key = (engine, options)
        if self._runner is None or self._runner_key != key:
            self._close_runner()
            self._runner = DeployedRunner(engine, options)
            self._runner_key = key
        return self._runner

    def _close_runner(self) -> None:
        """Close the cached sessions in the job lane, after any job still using them."""
        old, self._runner, self._runner_key = self._runner, None, None
        if old is not None:
            self.main_window.runner.submit(
                Job("deployed-close", "Closing as-deployed sessions", old.close,
                    cancellable=False, quiet=True)
            )  # fmt: skip

    # -- results ------------------------------------------------------------------------------
    def _on_result(self, report: DeployedReport) -> None:
        stale = report.plan != self.main_window.document.plan
        info = self.main_window.document.info
        self.pane.show_report(report, stale=stale, short=None if info is None else info.short_names)
        self.pane.select_layer(self.main_window.document.selection.current)
        self._show_status(report, stale)

    def _show_status(self, report: DeployedReport | None, stale: bool) -> None:
        if report is None or not report.outputs:
            self.status.hide()
            return
        o = report.outputs[0]
        worst = max((la.max_lsb for la in report.layers if la.max_lsb is not None), default=None)
        layers = "" if worst is None or math.isnan(worst) else f", layers ≤{worst:.0f} LSB"
        self.status.setText(
            f"{'(stale) ' if stale else ''}Deployed {fmt_db(o.deployed.sqnr_db)} · "
            f"sim {fmt_db(o.simulated.sqnr_db)}{layers}"
        )
        self.status.show()

    def _on_plan_changed(self) -> None:
        report = self.pane.report
        if report is not None:
            stale = report.plan != self.main_window.document.plan
            self.pane.set_stale(stale)
            self._show_status(report, stale)

    def _on_model_changed(self) -> None:
        self.main_window.runner.discard(JOB_KEY)
        self._close_runner()
        self.pane.show_report(None)
        self._show_status(None, False)

    def _on_selection(self, origin: object) -> None:
        if origin is not self.pane:
            self.pane.select_layer(self.main_window.document.selection.current)

    def _on_row(self) -> None:
        rows = self.pane.table.selectionModel().selectedRows()
        if not rows:
            return
        item = self.pane.table.item(rows[0].row(), 0)
        if item is not None:
            self.main_window.document.selection.set(
                [item.data(Qt.ItemDataRole.UserRole)], origin=self.pane
            )
