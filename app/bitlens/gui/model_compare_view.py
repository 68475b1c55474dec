"""File ▸ Compare With Model: the open model's weights against another model's, per layer.

A non-modal window over a :class:`~bitlens.core.compare.ModelComparison`
(computed in the worker): one row per layer both models have (matched by
name), the difference of the other model's weights from this one's
(relative L2, SQNR, max |Δ|) and, side by side, the weight SQNR each model
gets in the current plan's format for the layer. Layers only one model has
are listed above the table. Clicking a row selects the layer in the window.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.compare import ModelComparison, WeightDiff
from bitlens.gui import colors
from bitlens.gui.text import NONE, fmt_db, fmt_float, fmt_shape

COLUMNS = (
    ("Layer", "Matched by node name"),
    ("Op", "ONNX operator (this model / the other, when they differ)"),
    ("Shape", "Weight shape (this model vs the other, when they differ)"),
    ("Rel. L2 diff", "‖W_other − W‖ / ‖W‖ over the layer's weights"),
    ("Diff SQNR", "10·log10(‖W‖² / ‖W_other − W‖²): how far the other model moved; exact = equal"),
    ("Max |diff|", "Largest absolute difference of one weight"),
    ("Plan format", "The current plan's weight format for the layer"),
    ("W SQNR (this)", "This model's weights in the plan's format"),
    ("W SQNR (other)", "The other model's weights in the plan's format"),
)


def readonly_table(
    columns: tuple[tuple[str, str], ...], name: str, parent: QWidget
) -> QTableWidget:
    """A read-only table of ``(title, tooltip)`` columns sized to their contents."""
    table = QTableWidget(0, len(columns), parent)
    table.setObjectName(name)
    table.setHorizontalHeaderLabels([c for c, _ in columns])
    for i, (_, tip) in enumerate(columns):
        table.horizontalHeaderItem(i).setToolTip(tip)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    return table


class ModelCompareDialog(QDialog):
    layerActivated = Signal(str)

    def __init__(self, comparison: ModelComparison, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("modelCompare")
        self.comparison = comparison
        self.model: object = None  # the loaded model it was computed for (set by the window)
        self.setWindowTitle(f"Weights: {Path(comparison.path_b).name} against "
                            f"{Path(comparison.path_a).name}")  # fmt: skip
        self.resize(900, 520)
        self.summary = QLabel(self)
        self.summary.setObjectName("modelCompareSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = readonly_table(COLUMNS, "modelCompareTable", self)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # the room left goes to the names, not to the last SQNR: stretched to 350 px at
        # 1000 px wide, its colour filled a bar with the number far at its right end
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.cellClicked.connect(self._on_click)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self._fill()

    def _fill(self) -> None:
        c = self.comparison
        changed = sum(1 for d in c.layers if d.diff is not None and not d.identical)
        same = sum(1 for d in c.layers if d.identical)
        lines = [
            f"<b>{len(c.layers)}</b> layers matched by name: {changed} changed, {same} identical, "
            f"{sum(1 for d in c.layers if not d.same_shape)} with another shape.<br>"
            f"this: {c.path_a}<br>other: {c.path_b}"
        ]
        for label, names in (("only in this model", c.only_a), ("only in the other", c.only_b)):
            if names:
                shown = ", ".join(names[:12]) + (f", … ({len(names) - 12} more)"
                                                 if len(names) > 12 else "")  # fmt: skip
                lines.append(f"<b>{len(names)} {label}</b>: {shown}")
        lines += [f"the other model: {escape(n)}" for n in c.notes_b]  # e.g. already quantized
        self.summary.setText("<br>".join(lines))
        self.table.setRowCount(len(c.layers))
        for row, d in enumerate(c.layers):
            for col, (text, sqnr) in enumerate(_cells(d)):
                item = QTableWidgetItem(text)
                if col >= 3:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if sqnr is not None:
                    bg = colors.error_color(sqnr)
                    if bg is not None:
                        item.setBackground(bg)
                        item.setForeground(colors.INK)
                self.table.setItem(row, col, item)

    def _on_click(self, row: int, _col: int) -> None:
        if 0 <= row < len(self.comparison.layers):
            self.layerActivated.emit(self.comparison.layers[row].name)


def _cells(d: WeightDiff) -> list[tuple[str, float | None]]:
    """Each cell's text and, for SQNR cells, the value its colour follows."""
    shape = " ".join(fmt_shape(s) for s in d.shapes_a) or NONE
    if not d.same_shape:
        shape += " vs " + (" ".join(fmt_shape(s) for s in d.shapes_b) or NONE)
    op = d.op_a if d.op_a == d.op_b else f"{d.op_a} / {d.op_b}"
    e = d.diff
    return [
        (d.name, None),
        (op, None),
        (shape, None),
        (NONE if e is None else fmt_float(e.rel_l2, 3), None),
        (NONE if e is None else fmt_db(e.sqnr_db), None if e is None else e.sqnr_db),
        (NONE if e is None else fmt_float(e.max_abs, 3), None),
        (d.format or "float", None),
        (fmt_db(d.sqnr_a), d.sqnr_a),
        (fmt_db(d.sqnr_b), d.sqnr_b),
    ]
