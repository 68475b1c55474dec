"""The fidelity report of an export, shown when the export finishes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.export.report import FidelityReport, render


class ExportReportDialog(QDialog):
    """Non-modal: the user can keep working while reading it."""

    def __init__(self, report: FidelityReport, parent: QWidget | None = None):
        super().__init__(parent)
        self.report = report
        self.setWindowTitle("Export fidelity report")
        self.resize(820, 520)
        layout = QVBoxLayout(self)
        verdict = (
            "✔ fidelity check passed"
            if report.passed
            else f"✖ fidelity check FAILED ({len(report.failures)} problems, listed below)"
        )
        self.headline = QLabel(
            f"<b>{Path(report.export).name}</b>: {verdict}. "
            f"Needs ONNX Runtime ≥ {report.min_ort}; opset {report.opset}."
        )
        self.headline.setWordWrap(True)
        self.text = QPlainTextEdit(render(report))
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        role = QDialogButtonBox.ButtonRole.ActionRole
        self.open_folder_button = buttons.addButton("Open Folder", role)
        self.open_folder_button.setToolTip(f"Show {Path(report.export).parent} in the file manager")
        self.open_folder_button.clicked.connect(self.open_folder)
        self.copy_button = buttons.addButton("Copy Report", role)
        self.copy_button.setToolTip("Copy the report as text, to paste into an issue or a note")
        self.copy_button.clicked.connect(self.copy_report)
        layout.addWidget(self.headline)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)

    def open_folder(self) -> bool:
        """Open the folder of the exported model in the system's file manager."""
        folder = Path(self.report.export).resolve().parent
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def copy_report(self) -> None:
        QGuiApplication.clipboard().setText(self.text.toPlainText())
