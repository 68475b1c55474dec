"""Choose what a sensitivity sweep tries: weight formats, input-activation formats, and all
or selected layers (the window's ``bitlens sweep --formats F --activation-formats A``)."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.formats import SWEEP_LADDER
from bitlens.core.plan import ACTIVATION_CHOICES, WEIGHT_CHOICES

# The 8-bit activations a W8A8 export deploys (uint8 asymmetric: ONNX Runtime's default
# QDQ; int8 symmetric: TensorRT's): which layers' inputs do not take them is what a sweep
# over activations is for. Wider formats (fp16, int16) can be ticked to see what rescues them.
DEFAULT_ACTIVATIONS = ("uint8 asym", "int8 sym")

LIST_MAX_PX = 440  # the format lists' height at most: the dialog fits a 720 px screen
# (weight formats, layers or None for all, activation formats)
SweepChoice = tuple[list[str], list[str] | None, list[str]]


class _FormatList(QListWidget):
    """A checklist that asks for the height of its rows down to the last ticked one (and
    one more): at 1280x720 the weights list showed 11 of its 32 rows, and "int2 sym ch" and
    "bin ch", ticked, were below its fold. Asked, not required: on a small screen the
    dialog still fits, the list scrolls."""

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        items = (self.item(i) for i in range(self.count()))
        ticked = [i for i, it in enumerate(items) if it.checkState() == Qt.CheckState.Checked]
        rows = (max(ticked, default=0) + 2) * self.sizeHintForRow(0) + 2 * self.frameWidth()
        return QSize(hint.width(), max(hint.height(), min(rows, LIST_MAX_PX)))


def _checklist(parent: QWidget, names: Sequence[str], checked: set[str], name: str) -> QListWidget:
    box = _FormatList(parent)
    box.setObjectName(name)
    for text in names:
        item = QListWidgetItem(text, box)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if text in checked else Qt.CheckState.Unchecked)
    return box


def _ticked(box: QListWidget) -> list[str]:
    items = (box.item(i) for i in range(box.count()))
    return [it.text() for it in items if it.checkState() == Qt.CheckState.Checked]


class SweepDialog(QDialog):
    def __init__(
        self,
        selected: Sequence[str],
        parent: QWidget | None = None,
        n_layers: int | None = None,
        n_samples: int | None = None,
        metric: str | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Sensitivity sweep")
        self.selected = tuple(selected)
        self.n_layers = n_layers if n_layers is not None else len(self.selected)
        self.n_samples = n_samples
        # ticked as `bitlens sweep` defaults (--formats), one definition for both
        self.formats = _checklist(self, WEIGHT_CHOICES, set(SWEEP_LADDER), "sweepWeightFormats")
        self.activations = _checklist(
            self, ACTIVATION_CHOICES, set(DEFAULT_ACTIVATIONS), "sweepActivationFormats"
        )
        self.activations.setToolTip(
            "Each layer's input activation alone in each ticked format (range from the "
            "calibration), everything else float; activations are not stored in the file, "
            "so these save no bytes"
        )
        self.all_layers = QRadioButton("All layers", self)
        n_sel = len(self.selected)
        self.sel_layers = QRadioButton(
            "The selected layer" if n_sel == 1 else f"The {n_sel} selected layers", self
        )
        self.sel_layers.setEnabled(bool(self.selected))
        # one selected layer is usually just where the cursor was: sweep them all then
        (self.sel_layers if len(self.selected) > 1 else self.all_layers).setChecked(True)
        self.estimate = QLabel(self)
        self.estimate.setObjectName("sweepEstimate")
        self.estimate.setWordWrap(True)
        self.metric_note = metric
        for box in (self.formats, self.activations):
            box.itemChanged.connect(self._update_estimate)
        self.all_layers.toggled.connect(self._update_estimate)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok = buttons.button(QDialogButtonBox.StandardButton.Ok)
        lists = QGridLayout()
        lists.addWidget(QLabel("Weights in:", self), 0, 0)
        lists.addWidget(QLabel("Input activations in:", self), 0, 1)
        lists.addWidget(self.formats, 1, 0)
        lists.addWidget(self.activations, 1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(
            QLabel("Quantize one layer at a time, its weights in each weight format and its\n"
                   "input activation in each activation format, and measure the model output error:",
                   self)
        )  # fmt: skip
        layout.addLayout(lists)
        layout.addWidget(self.all_layers)
        layout.addWidget(self.sel_layers)
        baseline = QLabel("Baseline: the float model (exact output). Each result quantizes one "
                          "layer's weights or input activation alone, everything else float.",
                          self)  # fmt: skip
        baseline.setWordWrap(True)
        layout.addWidget(baseline)
        layout.addWidget(self.estimate)
        layout.addWidget(buttons)
        self._update_estimate()

    def runs(self) -> int:
        """Model runs the sweep will make: layers x formats (each over the evaluation set)."""
        formats, layers, acts = self.sweep_choice()
        n = self.n_layers if layers is None else len(layers)
        return n * (len(formats) + len(acts))

    def _update_estimate(self, *_args: object) -> None:
        formats, layers, acts = self.sweep_choice()
        n = self.n_layers if layers is None else len(layers)
        samples = "" if self.n_samples is None else f" on {self.n_samples} evaluation samples"
        text = (
            f"{n} layers × ({len(formats)} weight + {len(acts)} activation formats) = "
            f"{self.runs()} runs of the model{samples}."
        )
        if acts or self.metric_note:
            # as `bitlens sweep --activation-formats/--metric`: whole-model runs, each entry
            # with the output error, the task metric and the bytes saved
            text += (f" Task metric: {self.metric_note}." if self.metric_note else
                     " Task metric: accuracy when the data have labels.")  # fmt: skip
        self.estimate.setText(text)
        self.ok.setEnabled(bool(formats or acts))

    def choice(self) -> tuple[list[str], list[str] | None]:
        """The weight formats and the layers (None: all)."""
        formats, layers, _ = self.sweep_choice()
        return formats, layers

    def activation_formats(self) -> list[str]:
        return _ticked(self.activations)

    def sweep_choice(self) -> SweepChoice:
        layers = list(self.selected) if self.sel_layers.isChecked() else None
        return _ticked(self.formats), layers, self.activation_formats()

    @classmethod
    def ask(
        cls,
        selected: Sequence[str],
        parent: QWidget | None = None,
        n_layers: int | None = None,
        n_samples: int | None = None,
        metric: str | None = None,
    ) -> SweepChoice | None:
        dlg = cls(selected, parent, n_layers, n_samples, metric)
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return None
        formats, layers, acts = dlg.sweep_choice()
        return (formats, layers, acts) if formats or acts else None
