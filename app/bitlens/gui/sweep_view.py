"""Results of the last sensitivity sweep: the output error of each layer in each format.

A heat map (layers in model order by formats, colour = output SQNR with only
that layer quantized, against the float model's exact output) and the same
results as a list, worst first. Clicking a cell or row selects its layer
everywhere; double-clicking applies that format to that layer's weights (an
undoable edit).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.results import SweepEntry
from bitlens.gui import colors
from bitlens.gui.document import Document
from bitlens.gui.table_fill import sized_once
from bitlens.gui.text import fmt_bytes, fmt_db

COLUMNS = ("Layer", "Format", "Output SQNR", "cosine", "Bytes")
SORT_ROLE = Qt.ItemDataRole.UserRole


class _Item(QTableWidgetItem):
    """Sorts by its number (SORT_ROLE) rather than by its text."""

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.data(SORT_ROLE), other.data(SORT_ROLE)
        if isinstance(a, int | float) and isinstance(b, int | float):
            return a < b
        return self.text() < other.text()


class SweepView(QWidget):
    formatPicked = Signal(str, str)  # layer, weight format

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self.entries: list[SweepEntry] = []
        self.note = QLabel("Run Tools ▸ Sensitivity sweep to rank layers by how much "
                           "quantizing each one alone hurts the output.", self)  # fmt: skip
        self.note.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("sweepTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.table.cellDoubleClicked.connect(self._on_pick)
        self.heat = QTableWidget(0, 0, self)
        self.heat.setObjectName("sweepHeatMap")
        self.heat.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.heat.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.heat.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.heat.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.heat.cellClicked.connect(self._on_heat_clicked)
        self.heat.cellDoubleClicked.connect(self._on_heat_pick)
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.heat, "Heat map")
        self.tabs.addTab(self.table, "List")
        self._cells: dict[tuple[int, int], SweepEntry] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.note)
        layout.addWidget(self.tabs, 1)
        document.modelChanged.connect(self._on_model_changed)

    def _on_model_changed(self) -> None:
        self.show_entries([])

    def show_entries(self, entries: list[SweepEntry]) -> None:
        self.entries = list(entries)
        short = self._short_names()
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(entries))
        with sized_once(self.table):
            for i, e in enumerate(entries):
                values = (
                    (short.get(e.layer, e.layer), None), (e.format, None), (fmt_db(e.output.sqnr_db), e.output.sqnr_db),
                    (f"{e.output.cosine:.5f}", e.output.cosine), (fmt_bytes(e.bytes_after), e.bytes_after),
                )  # fmt: skip
                for j, (text, key) in enumerate(values):
                    it = _Item(text)
                    if key is not None:
                        it.setData(SORT_ROLE, float(key))
                        it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    if j == 0:
                        it.setData(SORT_ROLE + 1, i)
                        it.setToolTip(e.layer)
                    if j == 2:
                        colors.paint_error(it, e.output.sqnr_db)
                    self.table.setItem(i, j, it)
        # lowest output SQNR first: enabling sorting sorts by the header's indicator, so
        # setting it first sorts once (a second sortItems doubled the Python __lt__ calls)
        self.table.horizontalHeader().setSortIndicator(2, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        self._fill_heat(entries)
        if entries:
            self.note.setText(
                f"{len(entries)} results. Baseline: the float model (exact output); each cell "
                "quantizes one layer's weights alone. Click to select, double-click to apply."
            )

    def _fill_heat(self, entries: list[SweepEntry]) -> None:
        info = self._doc.info
        order = {n: i for i, n in enumerate(info.layer_names)} if info is not None else {}
        layers = sorted({e.layer for e in entries}, key=lambda n: order.get(n, len(order)))
        formats = _by_size(entries)
        self.heat.clear()
        self.heat.setRowCount(len(layers))
        self.heat.setColumnCount(len(formats))
        self.heat.setHorizontalHeaderLabels(formats)
        short = self._short_names()
        self.heat.setVerticalHeaderLabels([short.get(n, n) for n in layers])
        for r, name in enumerate(layers):
            self.heat.verticalHeaderItem(r).setToolTip(name)
        scale = colors.ErrorScale.spanning(e.output.sqnr_db for e in entries)
        self._cells = {}
        with sized_once(self.heat):
            for e in entries:
                r, c = layers.index(e.layer), formats.index(e.format)
                it = QTableWidgetItem(fmt_db(e.output.sqnr_db))
                it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                it.setToolTip(
                    f"{e.layer} in {e.format}: output SQNR {fmt_db(e.output.sqnr_db)}"
                    f"{f' (at output {e.at_output})' if e.at_output else ''}, cosine "
                    f"{e.output.cosine:.5f}, {fmt_bytes(e.bytes_after)}\ndouble-click to apply"
                )
                col = colors.error_color(e.output.sqnr_db, scale)
                if col is not None:
                    it.setBackground(col)
                    it.setForeground(colors.INK)
                self.heat.setItem(r, c, it)
                self._cells[(r, c)] = e

    def _short_names(self) -> dict[str, str]:
        """The model's short layer names (the part that tells layers apart)."""
        info = self._doc.info
        return {} if info is None else info.short_names

    def _on_heat_clicked(self, row: int, col: int) -> None:
        e = self._cells.get((row, col))
        if e is not None:
            self._doc.selection.set([e.layer], e.layer, origin=self)

    def _on_heat_pick(self, row: int, col: int) -> None:
        e = self._cells.get((row, col))
        if e is not None:
            self.formatPicked.emit(e.layer, e.format)

    def _entry(self, row: int) -> SweepEntry | None:
        item = self.table.item(row, 0)
        if item is None:
            return None
        return self.entries[int(item.data(SORT_ROLE + 1))]

    def _on_row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        e = self._entry(rows[0].row())
        if e is not None:
            self._doc.selection.set([e.layer], e.layer, origin=self)

    def _on_pick(self, row: int, _col: int) -> None:
        e = self._entry(row)
        if e is not None:
            self.formatPicked.emit(e.layer, e.format)


def _by_size(entries: list[SweepEntry]) -> list[str]:
    """The swept formats, most bytes first (int8, int4, int2...): the entries come worst
    first, and columns in their order moved with the results (int4, int2, int8 on
    open_nsfw, whose first conv measured worse at int4 than at int2)."""
    size: dict[str, int] = {}
    for e in entries:
        size[e.format] = size.get(e.format, 0) + e.bytes_after
    return sorted(size, key=lambda f: -size[f])  # stable: equal sizes keep their order
