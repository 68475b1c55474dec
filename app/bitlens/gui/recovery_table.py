"""The sandbox's recovery comparison: for the selected layer, the output error of plain
rounding and of each recovery method (GPTQ, bias correction, AWQ, clipping search) in the
layer's weight format, measured on its calibration inputs. Numbers come from
:func:`bitlens.core.recovery.compare.method_rows`, computed in the detail worker."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from bitlens.core.recovery.compare import MethodRow
from bitlens.gui import colors
from bitlens.gui.text import fmt_db

COLUMNS = ("Recovery", "Layer SQNR", "vs plain", "Note")


class RecoveryTable(QTableWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setObjectName("recoveryTable")
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.setToolTip(
            "The layer's own output error on its calibration inputs with each recovery "
            "method, next to plain rounding (set a method in the table's Recovery column)"
        )

    def show_rows(self, rows: Sequence[MethodRow], fmt: str, current: str | None) -> None:
        self.setRowCount(len(rows))
        plain = next((r.sqnr_db for r in rows if r.method == "plain"), None)
        for i, r in enumerate(rows):
            gain = "" if r.sqnr_db is None or plain is None else f"{r.sqnr_db - plain:+.2f} dB"
            cells = (r.method, fmt_db(r.sqnr_db) if r.sqnr_db is not None else "n/a", gain, r.note)
            for j, text in enumerate(cells):
                it = QTableWidgetItem(text)
                it.setToolTip(f"{fmt}, {r.method}: {r.note}")
                if j in (1, 2):
                    it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if j == 1:
                    colors.paint_error(it, r.sqnr_db)
                if r.method == (current or "plain"):
                    f = it.font()
                    f.setBold(True)
                    it.setFont(f)
                self.setItem(i, j, it)
