"""File ▸ Export Options: how Export Quantized Model writes the file and its report.

The options live with the window (not per export), so Ctrl+E keeps asking only
for the file name; this dialog changes what every later export does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from bitlens.core.export.exporter import ExportOptions
from bitlens.core.export.weights import FOLD, QDQ

WEIGHT_MODES = {
    FOLD: "compact codes, unpacked to float when ONNX Runtime loads the model "
    "(smallest file, float speed, exact)",
    QDQ: "DequantizeLinear on native int8/int16/int4/fp8 types (what other runtimes read); "
    "other formats stay compact codes",
}
_TIP = Qt.ItemDataRole.ToolTipRole
AUTO_OPSET = 0  # the spin box's "automatic" value: the exporter picks the lowest opset that works


class ExportOptionsDialog(QDialog):
    def __init__(
        self, options: ExportOptions, report_dir: Path | None, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setWindowTitle("Export Options")
        self.weights = QComboBox(self)
        self.weights.setObjectName("exportWeights")
        for key, tip in WEIGHT_MODES.items():
            self.weights.addItem(key, key)
            self.weights.setItemData(self.weights.count() - 1, tip, _TIP)
        self.weights.setCurrentIndex(self.weights.findData(options.weights))
        self.opset = QSpinBox(self)
        self.opset.setObjectName("exportOpset")
        self.opset.setRange(AUTO_OPSET, 25)
        self.opset.setSpecialValueText("automatic (lowest that holds the plan)")
        self.opset.setValue(options.opset or AUTO_OPSET)
        self.matmulnbits = QCheckBox("MatMul weights in 2/4/8-bit blocks as MatMulNBits", self)
        self.matmulnbits.setChecked(options.matmulnbits)
        self.int32_bias = QCheckBox("int32 biases for integer-kernel layers", self)
        self.int32_bias.setChecked(options.int32_bias)
        self.report_dir = QLineEdit("" if report_dir is None else str(report_dir), self)
        self.report_dir.setObjectName("exportReportDir")
        self.report_dir.setPlaceholderText("next to the exported model")
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.report_dir, 1)
        row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("Weights:", self.weights)
        form.addRow("Opset:", self.opset)
        form.addRow("", self.matmulnbits)
        form.addRow("", self.int32_bias)
        form.addRow("Fidelity report folder:", row)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for fidelity reports")
        if folder:
            self.report_dir.setText(folder)

    def options(self, base: ExportOptions) -> ExportOptions:
        """``base`` with this dialog's choices (fields it does not show are kept)."""
        opset = self.opset.value()
        return dataclasses.replace(
            base,
            weights=self.weights.currentData(),
            opset=None if opset == AUTO_OPSET else opset,
            matmulnbits=self.matmulnbits.isChecked(),
            int32_bias=self.int32_bias.isChecked(),
        )

    def chosen_report_dir(self) -> Path | None:
        text = self.report_dir.text().strip()
        return Path(text) if text else None
