"""Ask for the sizes of a model's dynamic input dimensions (for generated inputs).

One box per dimension: a name shared by several inputs is one box (so ``seq``
stays equal across ``input_ids`` and ``attention_mask``); an unnamed one is
shown as ``INPUT:AXIS``. Boxes start at :func:`bitlens.core.dims.suggest_dims`
values (remembered for this model, else read from the data, else a default
from the input's layout). The dialog is opened window-modal with ``open()``,
never ``exec()``, so nothing blocks; tests fill :attr:`boxes` and accept.
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.dims import DimSpec, needed_dims
from bitlens.core.model.types import ModelInfo
from bitlens.gui.text import fmt_shape, is_invented_dim

MAX_SIZE = 1 << 20


class DimsDialog(QDialog):
    def __init__(
        self, info: ModelInfo, suggested: Mapping[str, int], parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setObjectName("dimsDialog")
        self.setWindowTitle("Input sizes")
        self.info = info
        inputs = "<br>".join(
            f"<b>{t.name}</b>: {fmt_shape(t.shape)} {t.dtype}" for t in info.inputs
        )
        text = QLabel(
            "The model's inputs have dynamic sizes. Random inputs of these sizes will "
            f"calibrate and evaluate it (open real data for meaningful errors):<br>{inputs}",
            self,
        )
        text.setWordWrap(True)
        form = QFormLayout()
        self.boxes: dict[str, QSpinBox] = {}
        for spec in needed_dims(info):
            box = QSpinBox(self)
            box.setObjectName(f"dim:{spec.key}")
            box.setRange(1, MAX_SIZE)
            box.setValue(int(suggested.get(spec.key, 1)))
            self.boxes[spec.key] = box
            form.addRow(_label(spec), box)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def dims(self) -> dict[str, int]:
        return {k: b.value() for k, b in self.boxes.items()}


def _label(spec: DimSpec) -> str:
    """The dimension's name, or where it is for a name the file's exporter invented
    ("unk__56 (input[0])" read like a size the model asks for by that name)."""
    if not is_invented_dim(spec.key):
        return spec.label
    where = ", ".join(f"{name}[{axis}]" for name, axis in spec.uses)
    return f"{where} (unnamed, {spec.key})"
