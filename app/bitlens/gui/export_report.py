"""The fidelity report of an export, shown when the export finishes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtGui import QFontDatabase
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
        layout.addWidget(self.headline)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
