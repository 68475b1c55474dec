"""The layer detail's activation sandbox: each activation format with a calibrated
(static) range and with a range taken at run time (dynamic), side by side.

Double-clicking the static or dynamic error applies that choice to the layer's
activations (one undoable edit, the weights unchanged). The numbers are
:class:`~bitlens.core.activation_table.ActivationRow` values computed in the
layer-detail worker.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from bitlens.core.activation_table import ActivationRow
from bitlens.core.errors import BitlensError
from bitlens.core.formats import parse_format
from bitlens.core.plan import LayerChoice
from bitlens.core.results import TensorError
from bitlens.gui import colors
from bitlens.gui.document import Document
from bitlens.gui.format_help import format_tooltip
from bitlens.gui.message_bar import MessageBar
from bitlens.gui.table_fill import sized_once
from bitlens.gui.text import fmt_db

COLUMNS = ("Activation", "Static SQNR", "Dynamic SQNR")
STATIC_TIP = "static: the range calibrated once on the calibration data"
DYNAMIC_TIP = (
    "dynamic: the range of each input, computed at run time (ONNX Runtime's "
    "DynamicQuantizeLinear); no calibration, some run-time cost"
)
NO_DYNAMIC = "this format cannot take its range at run time (integer, per tensor only)"


class ActivationSandbox(QTableWidget):
    picked = Signal(str, str, bool)  # layer, activation format, dynamic

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(COLUMNS), parent)
        self.setObjectName("activationSandbox")
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        self.setToolTip(
            "Every activation format on this layer's input, static and dynamic, over the "
            "evaluation data; double-click an error to use that choice"
        )
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.cellDoubleClicked.connect(self._on_pick)
        self.layer = ""
        self.rows: tuple[ActivationRow, ...] = ()

    def show_rows(self, layer: str, rows: tuple[ActivationRow, ...], choice: LayerChoice) -> None:
        self.layer, self.rows = layer, rows
        self.setRowCount(len(rows))
        current = None if choice.activation is None else choice.activation.name
        bold = QFont(self.font())
        bold.setBold(True)
        with sized_once(self):
            for i, row in enumerate(rows):
                name = QTableWidgetItem(row.format)
                name.setToolTip(format_tooltip(row.format))
                self.setItem(i, 0, name)
                for j, err, dynamic in ((1, row.static, False), (2, row.dynamic, True)):
                    self.setItem(i, j, _error_item(row.format, err, dynamic))
                if row.format == current:
                    name.setFont(bold)
                    self.item(i, 2 if choice.dynamic else 1).setFont(bold)

    def _on_pick(self, row: int, col: int) -> None:
        if row >= len(self.rows):
            return
        r = self.rows[row]
        dynamic = col == 2
        if dynamic and r.dynamic is None:
            return
        self.picked.emit(self.layer, r.format, dynamic)


def _error_item(fmt: str, err: TensorError | None, dynamic: bool) -> QTableWidgetItem:
    how = DYNAMIC_TIP if dynamic else STATIC_TIP
    if err is None:
        it = QTableWidgetItem("—")
        it.setToolTip(NO_DYNAMIC)
    else:
        it = QTableWidgetItem(fmt_db(err.sqnr_db))
        it.setToolTip(
            f"{fmt} {'dynamic' if dynamic else 'static'}: SQNR {fmt_db(err.sqnr_db)}, "
            f"MSE {err.mse:.3g}, max |error| {err.max_abs:.3g}\n{how}\n"
            "double-click to use it for this layer's activations"
        )
        colors.paint_error(it, err.sqnr_db)
    it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return it


def apply_activation(
    document: Document, bar: MessageBar, layer: str, fmt: str, dynamic: bool
) -> None:
    """Set one layer's activation format (static or dynamic), keeping its weights."""
    plan = document.plan
    if plan is None:
        return
    mode = " (dynamic)" if dynamic else ""
    try:
        old = plan[layer]
        new = LayerChoice(old.weight, parse_format(fmt), dynamic, old.recovery)
        document.edit({layer: new}, f"{layer}: activations → {fmt}{mode}")
    except (BitlensError, KeyError) as exc:
        bar.show_error(f"Setting {layer} activations to {fmt}{mode}", exc)
