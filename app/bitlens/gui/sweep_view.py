"""Results of the last sensitivity sweep: the output error of each layer in each format.

A heat map (layers in model order by formats, colour = output SQNR with only
that layer quantized, against the float model's exact output) and the same
results as a list, worst first. A sweep over input activations too (or with a
task metric: ``bitlens sweep --activation-formats/--metric``) gives each entry's
output error, metric and bytes saved, the activation formats in columns of their
own. Clicking a cell or row selects its layer everywhere; double-clicking applies
that format to that layer's weights or input activation (an undoable edit).
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
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

from bitlens.core.plan import ACTIVATION_CHOICES
from bitlens.core.results import SweepEntry
from bitlens.core.search import Sensitivity
from bitlens.core.unrun_layers import sweep_note, unrun_in_sweep
from bitlens.gui import colors
from bitlens.gui.document import Document
from bitlens.gui.table_fill import sized_once
from bitlens.gui.text import fmt_bytes, fmt_db

COLUMNS = ("Layer", "Format", "Output SQNR", "cosine", "Bytes")
# the CLI's table for a sweep over activations or with a metric (cli/sweep.py)
SENSITIVITY_COLUMNS = ("Layer", "Kind", "Format", "Output error", "SQNR", "Metric", "Bytes saved")
Entry = SweepEntry | Sensitivity
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
    activationPicked = Signal(str, str)  # layer, input-activation format

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self.entries: list[Entry] = []
        self.metric_name: str | None = None
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
        self._cells: dict[tuple[int, int], Entry] = {}
        self._rows: dict[str, int] = {}  # the heat map's row of each layer
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.note)
        layout.addWidget(self.tabs, 1)
        document.modelChanged.connect(self._on_model_changed)
        document.selection.changed.connect(self._follow_selection)

    def _on_model_changed(self) -> None:
        self.show_entries([])

    def show_entries(self, entries: list[Entry], metric: str | None = None) -> None:
        """Show a sweep's entries: SweepEntry (weights only) or Sensitivity (weights and
        input activations, with ``metric``, the task metric's name, where one was measured)."""
        self.entries = list(entries)
        self.metric_name = metric
        short = self._short_names()
        measured = any(isinstance(e, Sensitivity) for e in entries)
        columns = SENSITIVITY_COLUMNS if measured else COLUMNS
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(list(columns))
        self.table.setRowCount(len(entries))
        sqnr_col = columns.index("SQNR" if measured else "Output SQNR")
        with sized_once(self.table):
            for i, e in enumerate(entries):
                values = _row(e, short.get(e.layer, e.layer))
                for j, (text, key) in enumerate(values):
                    it = _Item(text)
                    if key is not None:
                        it.setData(SORT_ROLE, float(key))
                    if key is not None or text == "-":  # a number, or none measured
                        it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    if j == 0:
                        it.setData(SORT_ROLE + 1, i)
                        it.setToolTip(e.layer)
                    if j == sqnr_col:
                        colors.paint_error(it, _sqnr(e))
                    self.table.setItem(i, j, it)
        # lowest output SQNR first: enabling sorting sorts by the header's indicator, so
        # setting it first sorts once (a second sortItems doubled the Python __lt__ calls)
        self.table.horizontalHeader().setSortIndicator(sqnr_col, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)
        for c in range(len(columns)):  # no labels and no metric loaded: no column of dashes
            dashes = columns[c] == "Metric" and all(getattr(e, "metric", None) is None for e in entries)
            self.table.setColumnHidden(c, dashes)
        self._fill_heat(entries)
        self._follow_selection(None)
        if entries and measured:
            kinds = "weights (weight columns) or its input activation (activation columns)"
            self.note.setText(
                f"{len(entries)} results. Baseline: the float model (exact output); each cell "
                f"quantizes one layer's {kinds} alone. Task metric: "
                f"{metric or 'none (no labels; a metric loaded in Find Plan is used)'}. "
                "Click to select, double-click to apply."
            )
        elif entries:
            info, weights = self._doc.info, [e for e in entries if isinstance(e, SweepEntry)]
            unrun = unrun_in_sweep(info, weights) if info is not None else []
            self.note.setText(
                f"{len(entries)} results. Baseline: the float model (exact output); each cell "
                "quantizes one layer's weights alone. Click to select, double-click to apply."
                + (f" Note: {sweep_note(unrun)}." if unrun else "")
            )

    def _fill_heat(self, entries: list[Entry]) -> None:
        info = self._doc.info
        order = {n: i for i, n in enumerate(info.layer_names)} if info is not None else {}
        layers = sorted({e.layer for e in entries}, key=lambda n: order.get(n, len(order)))
        weights = _by_size([e for e in entries if _kind(e) == "weight"])
        acts = _activations_wide_first(entries)
        both = bool(acts) or any(isinstance(e, Sensitivity) for e in entries)
        columns = [("weight", f) for f in weights] + [("activation", f) for f in acts]
        self.heat.clear()
        self.heat.setRowCount(len(layers))
        self.heat.setColumnCount(len(columns))
        self.heat.setHorizontalHeaderLabels([_header(k, f, both) for k, f in columns])
        for c, (kind, fmt) in enumerate(columns):
            self.heat.horizontalHeaderItem(c).setToolTip(
                f"weights in {fmt}" if kind == "weight" else
                f"the layer's input activation in {fmt} (range from the calibration)"
            )  # fmt: skip
        short = self._short_names()
        self.heat.setVerticalHeaderLabels([short.get(n, n) for n in layers])
        for r, name in enumerate(layers):
            self.heat.verticalHeaderItem(r).setToolTip(name)
        scale = colors.ErrorScale.spanning(_sqnr(e) for e in entries)
        self._cells = {}
        row_of = self._rows = {n: r for r, n in enumerate(layers)}
        col_of = {key: c for c, key in enumerate(columns)}
        with sized_once(self.heat):
            for e in entries:
                r, c = row_of[e.layer], col_of[(_kind(e), e.format)]
                it = QTableWidgetItem(fmt_db(_sqnr(e)))
                it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                it.setToolTip(_tooltip(e, self.metric_name))
                col = colors.error_color(_sqnr(e), scale)
                if col is not None:
                    it.setBackground(col)
                    it.setForeground(colors.INK)
                self.heat.setItem(r, c, it)
                self._cells[(r, c)] = e

    def _follow_selection(self, origin: object) -> None:
        """The selected layer's row in bold and scrolled into view: at 1280x720 the heat map
        shows four of open_nsfw's 54 rows, and the layer picked in the table was not among
        them. Nothing is selected in the map (a cell is a format, not just the layer)."""
        current = self._doc.selection.current
        for name, r in self._rows.items():
            head = self.heat.verticalHeaderItem(r)
            if head is not None and head.font().bold() != (name == current):
                font = head.font()
                font.setBold(name == current)
                head.setFont(font)
        r = self._rows.get(current or "")
        if r is not None and origin is not self:
            self.heat.scrollTo(self.heat.model().index(r, 0))

    def showEvent(self, event: QShowEvent) -> None:
        """Scroll once laid out: the sweep's results arrive while its dock is hidden behind
        another tab, where the heat map's height (so the scroll) is not yet the real one."""
        super().showEvent(event)
        QTimer.singleShot(0, self._refollow)  # a bound slot: dropped if the view is gone

    def _refollow(self) -> None:
        self._follow_selection(None)

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
            self._pick(e)

    def _pick(self, e: Entry) -> None:
        if _kind(e) == "activation":
            self.activationPicked.emit(e.layer, e.format)
        else:
            self.formatPicked.emit(e.layer, e.format)

    def _entry(self, row: int) -> Entry | None:
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
            self._pick(e)


def _kind(e: Entry) -> str:
    return e.kind if isinstance(e, Sensitivity) else "weight"


def _sqnr(e: Entry) -> float:
    """Output SQNR in dB; a Sensitivity's relative L2 error as the CLI prints it."""
    if isinstance(e, SweepEntry):
        return e.output.sqnr_db
    return -20.0 * math.log10(e.error) if e.error > 0 else math.inf


def _row(e: Entry, shown: str) -> tuple[tuple[str, float | None], ...]:
    """The list's cells: (text, sort key or None)."""
    if isinstance(e, SweepEntry):
        return (
            (shown, None), (e.format, None), (fmt_db(e.output.sqnr_db), e.output.sqnr_db),
            (f"{e.output.cosine:.5f}", e.output.cosine), (fmt_bytes(e.bytes_after), e.bytes_after),
        )  # fmt: skip
    return (
        (shown, None), (e.kind, None), (e.format, None), (f"{e.error:.4g}", e.error),
        (fmt_db(_sqnr(e)), _sqnr(e)),
        ("-" if e.metric is None else f"{e.metric:.4g}", e.metric),
        (fmt_bytes(e.bytes_saved), e.bytes_saved),
    )  # fmt: skip


def _header(kind: str, fmt: str, both: bool) -> str:
    """A heat-map column's title: the format, and under it which tensor when activations
    were swept too."""
    if not both:
        return fmt
    return f"{fmt}\n{'weights' if kind == 'weight' else 'input act.'}"


def _tooltip(e: Entry, metric: str | None) -> str:
    if isinstance(e, SweepEntry):
        return (
            f"{e.layer} in {e.format}: output SQNR {fmt_db(e.output.sqnr_db)}"
            f"{f' (at output {e.at_output})' if e.at_output else ''}, cosine "
            f"{e.output.cosine:.5f}, {fmt_bytes(e.bytes_after)}\ndouble-click to apply"
        )
    what = "weights" if e.kind == "weight" else "input activation"
    value = "-" if e.metric is None else f"{e.metric:.4g}"
    saved = (
        f"saves {fmt_bytes(e.bytes_saved)} against float weights" if e.kind == "weight"
        else "saves no file bytes (activations are not stored in the file)"
    )  # fmt: skip
    return (
        f"{e.layer}: {what} in {e.format}\noutput error {e.error:.4g} (SQNR {fmt_db(_sqnr(e))}), "
        f"{metric or 'metric'} {value}\n{saved}\ndouble-click to apply"
    )


def _activations_wide_first(entries: list[Entry]) -> list[str]:
    """The swept activation formats in the plan's order (fp16 and int16 before 8 bits)."""
    found = {e.format for e in entries if _kind(e) == "activation"}
    rank = {f: i for i, f in enumerate(ACTIVATION_CHOICES)}
    return sorted(found, key=lambda f: rank.get(f, len(rank)))


def _by_size(entries: list[Entry]) -> list[str]:
    """The swept weight formats, most bytes first (int8, int4, int2...): the entries come
    worst first, and columns in their order moved with the results (int4, int2, int8 on
    open_nsfw, whose first conv measured worse at int4 than at int2)."""
    size: dict[str, int] = {}
    for e in entries:
        # a Sensitivity gives bytes saved: fewer saved is more bytes
        n = e.bytes_after if isinstance(e, SweepEntry) else -e.bytes_saved
        size[e.format] = size.get(e.format, 0) + n
    return sorted(size, key=lambda f: -size[f])  # stable: equal sizes keep their order
