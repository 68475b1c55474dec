"""Format explanations in the window: tooltips for format names, and Help ▸ Format Reference.

Both read :mod:`bitlens.core.formats.describe`, which derives them from the
format spec and the storage accounting, so they cannot drift from what the
parser accepts and what a choice costs.
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.errors import BitlensError
from bitlens.core.formats.describe import describe_format, format_reference
from bitlens.core.plan import ACTIVATION_CHOICES, WEIGHT_CHOICES
from bitlens.gui.text import FLOAT_LABEL

FLOAT_TIP = "Kept in float: stored and computed as in the original model (no error, no saving)"


@cache
def format_tooltip(name: str) -> str:
    """A format's bits, grid and cost; an explanation for "keep float"; "" if unknown."""
    if name == FLOAT_LABEL:
        return FLOAT_TIP
    base = name.removesuffix(" (dynamic)")
    try:
        tip = describe_format(base).tooltip()
    except BitlensError:
        return ""
    if base != name:
        tip += "\ndynamic: the range is computed from each input at run time (no calibration)"
    return tip


def add_format_tooltips(combo: QComboBox) -> None:
    """Give every entry of a combo of format names its explanation."""
    for i in range(combo.count()):
        tip = format_tooltip(combo.itemText(i))
        if tip:
            combo.setItemData(i, tip, Qt.ItemDataRole.ToolTipRole)


class FormatReferenceDialog(QDialog):
    """Help ▸ Format Reference: the grammar of format names, and every format the window
    offers with its bits, levels and cost."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Format Reference")
        self.resize(900, 640)
        intro = QLabel(
            "A format name is a family and width, then modifiers, e.g. <b>int4 sym blk32</b>, "
            "<b>uint8 asym</b>, <b>nf4 blk64</b>. Hover a format anywhere in the window for "
            "the same explanation.",
            self,
        )
        intro.setWordWrap(True)
        self.grammar = _table(["Name", "Meaning"], format_reference(), self)
        self.grammar.setObjectName("formatGrammar")
        offered = []
        for name in dict.fromkeys((*WEIGHT_CHOICES, *ACTIVATION_CHOICES)):
            d = describe_format(name)
            offered.append((
                d.name,
                str(d.bits),
                "—" if d.levels is None else str(d.levels),
                f"{d.bits_per_value:.2f}",
                d.scale,
            ))  # fmt: skip
        self.offered = _table(
            ["Format", "Code bits", "Levels", "Bits/value (256×256)", "Also stores"],
            offered,
            self,
        )
        self.offered.setObjectName("formatsOffered")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(QLabel("<b>Names</b>", self))
        layout.addWidget(self.grammar, 1)
        layout.addWidget(QLabel("<b>Formats offered in the table and sandbox</b>", self))
        layout.addWidget(self.offered, 2)
        layout.addWidget(buttons)


def _table(headers: list[str], rows: list[tuple[str, ...]], parent: QWidget) -> QTableWidget:
    t = QTableWidget(len(rows), len(headers), parent)
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setWordWrap(True)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            t.setItem(r, c, item)
    header = t.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(len(headers) - 1, QHeaderView.ResizeMode.Stretch)
    return t
