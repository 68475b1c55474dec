"""The fidelity report of an export, shown when the export finishes: a table of checks.

Each row is a :class:`~bitlens.core.export.checklist.Check` (check, expected,
got, verdict). The verdict is spelled out with a symbol and a word ("✔ pass",
"⚠ warning", "✖ fail") and an icon, as well as coloured, so that colour is
never the only cue. The full text report (per-layer table, notes) is under
Details; Copy copies both.

The window builds the dialog in the export's result handler (so that it holds the last
report at once) but shows it a pass later (:meth:`ExportReportDialog.show_later`, through
``gui/view_passes.py``). Shown in the handler, its build, first layout and exposure and the
main window's repaint for the activation it loses to the dialog (its item views and the
layer detail's plots, 25-40 ms of the window's thread on rapidocr's PP-OCRv4 recognizer)
fell in the result's pass and the main window's repaint of the result, one event-loop gap
(issue 11; docs/benchmarks.md "uidialog (session 16)").
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QBrush,
    QCloseEvent,
    QColor,
    QFontDatabase,
    QGuiApplication,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.export.checklist import Check, Verdict, checklist, counts, summary
from bitlens.core.export.report import FidelityReport, render
from bitlens.gui.open_folder import open_folder
from bitlens.gui.view_passes import ViewPasses

COLUMNS = ("Check", "Expected", "Got", "Verdict")
VERDICT_TEXT = {Verdict.PASS: "✔ pass", Verdict.WARNING: "⚠ warning", Verdict.FAIL: "✖ fail"}
# light backgrounds with dark text in either theme (text colour set with them)
VERDICT_FILL = {
    Verdict.PASS: QColor(198, 239, 206),
    Verdict.WARNING: QColor(255, 222, 160),
    Verdict.FAIL: QColor(250, 190, 185),
}
VERDICT_ICON = {
    Verdict.PASS: QStyle.StandardPixmap.SP_DialogApplyButton,
    Verdict.WARNING: QStyle.StandardPixmap.SP_MessageBoxWarning,
    Verdict.FAIL: QStyle.StandardPixmap.SP_MessageBoxCritical,
}
INK = QColor(20, 20, 20)


class ExportReportDialog(QDialog):
    """Non-modal: the user can keep working while reading it."""

    def __init__(
        self, report: FidelityReport, parent: QWidget | None = None, rows: int | None = None
    ):
        """``rows``: the evaluation samples the check ran (the report counts runs, and feeds
        of one shape run batched: "1 evaluation samples" for 4 images)."""
        super().__init__(parent)
        self.report = report
        self._passes: ViewPasses | None = None  # where a later show waits (show_later)
        self.checks: tuple[Check, ...] = checklist(report)
        self.setWindowTitle("Export fidelity report")
        self.resize(900, 560)
        layout = QVBoxLayout(self)
        n = counts(self.checks)
        mark = "✖" if not report.passed else "⚠" if n[Verdict.WARNING] else "✔"
        self.summary = (
            f"{Path(report.export).name}: {mark} {summary(report, self.checks)}. "
            f"Needs ONNX Runtime ≥ {report.min_ort}; opset {report.opset}; "
            f"checked on {_samples(report.samples, rows)}."
        )
        self.headline = QLabel(self.summary)
        self.headline.setWordWrap(True)
        self.headline.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = self._build_table()
        self.text = QPlainTextEdit(render(report))
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setVisible(False)
        split = QSplitter(Qt.Orientation.Vertical, self)
        split.addWidget(self.table)
        split.addWidget(self.text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        role = QDialogButtonBox.ButtonRole.ActionRole
        self.details_button = buttons.addButton("Details", role)
        self.details_button.setCheckable(True)
        self.details_button.setToolTip("Show the full text report: every layer, every note")
        self.details_button.toggled.connect(self.text.setVisible)
        self.open_folder_button = buttons.addButton("Open Folder", role)
        self.open_folder_button.setToolTip(f"Show {Path(report.export).parent} in the file manager")
        self.open_folder_button.clicked.connect(self.open_folder)
        self.copy_button = buttons.addButton("Copy Report", role)
        self.copy_button.setToolTip(
            "Copy the checks and the full text report, to paste into an issue or a note"
        )
        self.copy_button.clicked.connect(self.copy_report)
        layout.addWidget(self.headline)
        layout.addWidget(split, 1)
        layout.addWidget(buttons)

    def _build_table(self) -> QTableWidget:
        t = QTableWidget(len(self.checks), len(COLUMNS), self)
        t.setObjectName("exportChecks")
        t.setHorizontalHeaderLabels(list(COLUMNS))
        t.verticalHeader().setVisible(False)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setWordWrap(True)
        t.setTextElideMode(Qt.TextElideMode.ElideNone)
        style = self.style()
        for i, c in enumerate(self.checks):
            tip = c.detail or c.check
            for j, text in enumerate((c.check, c.expected, c.got)):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{text}\n\n{tip}" if tip != text else text)
                t.setItem(i, j, item)
            # the icon stands for the symbol in the table; the copied text keeps the symbol
            v = QTableWidgetItem(style.standardIcon(VERDICT_ICON[c.verdict]), c.verdict.value)
            v.setBackground(QBrush(VERDICT_FILL[c.verdict]))
            v.setForeground(QBrush(INK))
            v.setToolTip(tip)
            t.setItem(i, 3, v)
        h = t.horizontalHeader()
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        # wrapped rows take their height from the columns' widths: again on every resize
        h.sectionResized.connect(lambda *_: t.resizeRowsToContents())
        return t

    def show_later(self, passes: ViewPasses) -> None:
        """Shown on a later pass of the event loop, after the repaints already asked for;
        closed before then, it is never shown."""
        self._passes = passes
        passes.post(self.show)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self._passes is not None:
            self._passes.cancel(self.show)
        super().closeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.table.resizeRowsToContents()

    def verdict_of(self, row: int) -> str:
        return VERDICT_TEXT[self.checks[row].verdict] if self.table.item(row, 3) else ""

    def as_text(self) -> str:
        """The checks as tab-separated lines (pasted into a spreadsheet, they are columns)."""
        lines = ["\t".join(COLUMNS)]
        for c in self.checks:
            lines.append("\t".join((c.check, c.expected, c.got, VERDICT_TEXT[c.verdict])))
        return "\n".join(lines)

    def open_folder(self) -> bool:
        """Open the folder of the exported model in the system's file manager."""
        folder = Path(self.report.export).resolve().parent
        return open_folder(folder)

    def copy_report(self) -> None:
        QGuiApplication.clipboard().setText(
            f"{self.summary}\n\n{self.as_text()}\n\n{self.text.toPlainText()}"
        )


def _samples(runs: int, rows: int | None) -> str:
    """How much evaluation data the check ran: samples, and runs where they differ."""
    if rows is None or rows == runs:
        n = runs if rows is None else rows
        return f"{n} evaluation sample{'s' if n != 1 else ''}"
    return f"{rows} evaluation samples in {runs} run{'s' if runs != 1 else ''}"
