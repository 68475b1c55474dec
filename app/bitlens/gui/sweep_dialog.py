"""Choose what a sensitivity sweep tries: weight formats, and all or selected layers."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.formats import INSPECT_LADDER
from bitlens.core.plan import WEIGHT_CHOICES


class SweepDialog(QDialog):
    def __init__(
        self,
        selected: Sequence[str],
        parent: QWidget | None = None,
        n_layers: int | None = None,
        n_samples: int | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Sensitivity sweep")
        self.selected = tuple(selected)
        self.n_layers = n_layers if n_layers is not None else len(self.selected)
        self.n_samples = n_samples
        self.formats = QListWidget(self)
        default = {f for f in INSPECT_LADDER if f != "fp16"}
        for name in WEIGHT_CHOICES:
            item = QListWidgetItem(name, self.formats)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                Qt.CheckState.Checked if name in default else Qt.CheckState.Unchecked
            )
        self.all_layers = QRadioButton("All layers", self)
        self.sel_layers = QRadioButton(f"The {len(self.selected)} selected layers", self)
        self.sel_layers.setEnabled(bool(self.selected))
        # one selected layer is usually just where the cursor was: sweep them all then
        (self.sel_layers if len(self.selected) > 1 else self.all_layers).setChecked(True)
        self.estimate = QLabel(self)
        self.estimate.setObjectName("sweepEstimate")
        self.estimate.setWordWrap(True)
        self.formats.itemChanged.connect(self._update_estimate)
        self.all_layers.toggled.connect(self._update_estimate)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(
            QLabel("Quantize one layer's weights at a time in each format\n"
                   "and measure the model output error:", self)
        )  # fmt: skip
        layout.addWidget(self.formats)
        layout.addWidget(self.all_layers)
        layout.addWidget(self.sel_layers)
        layout.addWidget(
            QLabel("Baseline: the float model (exact output). Each result quantizes one "
                   "layer's weights alone, everything else float.", self)
        )  # fmt: skip
        layout.addWidget(self.estimate)
        layout.addWidget(buttons)
        self._update_estimate()

    def runs(self) -> int:
        """Model runs the sweep will make: layers x formats (each over the evaluation set)."""
        formats, layers = self.choice()
        n = self.n_layers if layers is None else len(layers)
        return n * len(formats)

    def _update_estimate(self, *_args: object) -> None:
        formats, layers = self.choice()
        n = self.n_layers if layers is None else len(layers)
        samples = "" if self.n_samples is None else f" on {self.n_samples} evaluation samples"
        self.estimate.setText(
            f"{n} layers × {len(formats)} formats = {self.runs()} runs of the model{samples}."
        )

    def choice(self) -> tuple[list[str], list[str] | None]:
        formats = [
            self.formats.item(i).text()
            for i in range(self.formats.count())
            if self.formats.item(i).checkState() == Qt.CheckState.Checked
        ]
        return formats, (list(self.selected) if self.sel_layers.isChecked() else None)

    @classmethod
    def ask(
        cls,
        selected: Sequence[str],
        parent: QWidget | None = None,
        n_layers: int | None = None,
        n_samples: int | None = None,
    ) -> tuple[list[str], list[str] | None] | None:
        dlg = cls(selected, parent, n_layers, n_samples)
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return None
        formats, layers = dlg.choice()
        return (formats, layers) if formats else None
