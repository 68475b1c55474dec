"""Which of a layer's three errors the window colours and plots: one choice for all views.

The table's colour, the graph's colour and the error plot follow the same
kind, so a red layer in one is the same red layer in the others.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QComboBox, QWidget

from bitlens.core.results import Evaluation
from bitlens.gui.colors import DEFAULT_SCALE, ErrorScale

# key: (label, one-line explanation)
ERROR_KINDS = {
    "accumulated": (
        "accumulated",
        "Accumulated: this layer's output under the whole plan, every earlier layer's error "
        "included (what the model really sees).",
    ),
    "local": (
        "local",
        "Local: this layer's output with only this layer quantized (its own sensitivity).",
    ),
    "weight": (
        "weight",
        "Weight: the quantized weights against the float ones (no data needed).",
    ),
}
DEFAULT_KIND = "accumulated"
_TOOLTIP_ROLE = Qt.ItemDataRole.ToolTipRole


class ErrorKind(QObject):
    """The current error kind, shared by the views that show per-layer errors."""

    changed = Signal(str)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._kind = DEFAULT_KIND
        self._scale_key: tuple[int, str] | None = None
        self._scale = DEFAULT_SCALE
        self._scale_of: Evaluation | None = None

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def explanation(self) -> str:
        return ERROR_KINDS[self._kind][1]

    def scale(self, evaluation: Evaluation | None) -> ErrorScale:
        """The colour scale of this kind over ``evaluation``'s layers (computed once each)."""
        key = (id(evaluation), self._kind)
        if self._scale_key != key:
            values = []
            if evaluation is not None:
                for r in evaluation.layers.values():
                    err = {"accumulated": r.accumulated, "local": r.local, "weight": r.weight}[
                        self._kind
                    ]
                    if err is not None:
                        values.append(err.sqnr_db)
            self._scale = ErrorScale.spanning(values)
            self._scale_key = key
            self._scale_of = evaluation  # keeps id() from being reused while cached
        return self._scale

    def set(self, kind: str) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        if kind != self._kind:
            self._kind = kind
            self.changed.emit(kind)


class ErrorKindBox(QComboBox):
    """A combo bound both ways to an :class:`ErrorKind`: several boxes show one choice."""

    def __init__(self, shared: ErrorKind, parent: QWidget | None = None):
        super().__init__(parent)
        self._shared = shared
        # The kind alone ("accumulated", not "accumulated SQNR"): the plots' metric box
        # says SQNR or MSE next to it, the graph's key says dB, and the short name fits
        # the graph pane at 1280x720.
        for key, (label, tip) in ERROR_KINDS.items():
            self.addItem(label, key)
            self.setItemData(self.count() - 1, tip, _TOOLTIP_ROLE)
        # as wide as its longest name, whatever the font: never cut to "accumulat…"
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._show(shared.kind)
        shared.changed.connect(self._show)
        self.currentIndexChanged.connect(lambda i: shared.set(self.itemData(i)))

    def _show(self, kind: str) -> None:
        self.setCurrentIndex(self.findData(kind))
        self.setToolTip("Error kind shown in the table, graph and plots.\n" + ERROR_KINDS[kind][1])
