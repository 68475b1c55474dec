"""The layer detail's Codes tab: quantize and dequantize made visible, element by element.

For the selected layer's first weight in its planned format, a slice of
the tensor: the float weight x, the stored integer code q, the group's
scale and zero point (or lookup level), the value rebuilt from them x̂, and
the error x̂ − x. The numbers come from :func:`bitlens.core.codes.planned_code_slice`
in the worker; this widget asks for a slice (``requested``) and draws it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.codes import CodeSlice, summary
from bitlens.core.plan import LayerChoice
from bitlens.gui.elided_label import ElidedLabel
from bitlens.gui.model_compare_view import readonly_table
from bitlens.gui.text import NONE

COLUMNS = (
    ("Index", "Position in the weight tensor"),
    ("x", "The float weight"),
    ("q", "The stored code (an integer; for fp8 and float casts the cast value)"),
    ("Scale", "The scale of the element's group (α for binary and ternary)"),
    ("Zero pt", "The zero point of the element's group (integer formats)"),
    ("Level", "Lookup formats: the codebook level q selects"),
    ("x̂", "The value a runtime rebuilds from q"),
    ("x̂ − x", "The quantization error of this weight"),
    ("Group", "Which scale group the element belongs to"),
)
ROW_COUNTS = (32, 64, 256, 1024)
PER_GROUP = ("Scale", "Zero pt", "Level", "Group")  # hidden while one value (or none) for all
SHRINKS = (8, 0)  # Group, then Index: text columns that elide before numbers do


def fit_columns(table: QTableWidget) -> str:
    """Fit the columns to the pane without a sideways scroll where they can (the detail
    pane is ~380 px wide at 1280x720). A group column every row leaves empty (Level for
    integer formats) or gives one value (Scale, Zero pt, Group within one channel) is
    hidden, that value returned ("channel 3 · scale 0.0123 · zero pt 0") for the line
    above; the Index column then gives up width, eliding in the middle, before a number
    is cut."""
    rows = table.rowCount()
    same = []
    for j, (title, _tip) in enumerate(COLUMNS):
        texts = {table.item(i, j).text() if table.item(i, j) else NONE for i in range(rows)}
        hide = title in PER_GROUP and rows > 0 and len(texts) == 1
        table.setColumnHidden(j, hide)
        if hide and texts != {NONE}:
            value = texts.pop()  # the group first: "channel 3 · scale 0.0123 · zero pt 0"
            if title == "Group":
                same.insert(0, value)
            else:
                same.append(f"{title.lower()} {value}")
    shown = [j for j in range(table.columnCount()) if not table.isColumnHidden(j)]
    need = {j: max(table.sizeHintForColumn(j), table.horizontalHeader().sectionSizeHint(j))
            for j in shown}  # fmt: skip
    room = table.viewport().width()
    bar = table.verticalScrollBar()
    if not bar.isVisible() and table.verticalHeader().length() > table.viewport().height():
        room -= bar.sizeHint().width()  # the rows are about to need it
    over = sum(need.values()) - room
    for j in SHRINKS:
        if over <= 0 or j not in need:
            continue
        floor = table.fontMetrics().horizontalAdvance("[0, …, 0]") + 8
        cut = min(over, max(need[j] - floor, 0))
        need[j] -= cut
        over -= cut
    for j, w in need.items():
        table.setColumnWidth(j, w)
    return " · ".join(same)


def _num(x: float | None, digits: int = 5) -> str:
    return NONE if x is None else f"{x:.{digits}g}"


class CodesView(QWidget):
    requested = Signal(str, object, int, int)  # layer, LayerChoice, start, count

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.layer: str | None = None
        self.choice: LayerChoice | None = None
        self.slice: CodeSlice | None = None
        self._asked: tuple | None = None  # the last request, so a repeat is not sent twice
        # one line that never widens the pane: where narrow it ends in "…", whole in its tooltip
        self.header = ElidedLabel(parent=self)
        self.header.setObjectName("codesHeader")
        self.start = QSpinBox(self)
        self.start.setObjectName("codesStart")
        self.start.setRange(0, 0)
        self.start.setToolTip("First element shown (flat index, C order)")
        self.start.setKeyboardTracking(False)
        self.start.valueChanged.connect(lambda _v: self.refresh())
        self.count = QComboBox(self)
        self.count.setObjectName("codesCount")
        for n in ROW_COUNTS:
            self.count.addItem(f"{n} rows", n)
        self.count.setCurrentIndex(1)
        self.count.currentIndexChanged.connect(lambda _i: self.refresh())
        self.table = readonly_table(COLUMNS, "codesTable", self)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(QLabel("From", self))
        bar.addWidget(self.start)
        bar.addWidget(self.count)
        bar.addWidget(self.header, 1)  # one row with the controls: the table keeps the height
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        # never makes the detail pane's minimum larger (a small pane clips the controls)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self.show_message("Select a layer to see its weights' codes.")

    # -- what to show ---------------------------------------------------------------------------
    def set_target(self, layer: str | None, choice: LayerChoice | None) -> None:
        """The layer and plan choice the detail now shows (None while it is computed)."""
        if (layer, choice) == (self.layer, self.choice):
            return
        moved = layer != self.layer
        self.layer, self.choice = layer, choice
        if moved:
            self.start.blockSignals(True)
            self.start.setValue(0)
            self.start.blockSignals(False)
        self.refresh()

    def refresh(self) -> None:
        """Ask for the slice now on screen (only while the tab is visible)."""
        if self.layer is None or self.choice is None:
            self.show_message("Select a layer to see its weights' codes.")
            return
        if self.choice.weight is None:
            self.show_message(f"{self.layer} keeps its weights in float: choose a weight "
                              "format to see its codes.")  # fmt: skip
            return
        if not self.isVisible():
            return
        ask = (self.layer, self.choice, self.start.value(), int(self.count.currentData()))
        if ask == self._asked:
            return
        self._asked = ask
        self.header.setText(f"{self.layer} · {self.choice.weight.name} · computing…")
        self.requested.emit(*ask)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()

    def on_codes(self, asked: tuple, result: CodeSlice | str) -> None:
        """A slice (or why there is none) for the request ``asked``; a stale one is dropped."""
        if asked != self._asked:
            return
        if isinstance(result, str):
            self.header.setText(f"{self.layer} · {result}")
            self.table.setRowCount(0)
            return
        self.show_slice(result)

    def show_message(self, text: str) -> None:
        self.slice = None
        self._asked = None
        self.header.setText(text)
        self.header.setToolTip(text)
        self.table.setRowCount(0)

    def show_slice(self, s: CodeSlice) -> None:
        self.slice = s
        self.start.blockSignals(True)
        self.start.setRange(0, max(s.total - 1, 0))
        self.start.setValue(s.start)
        self.start.blockSignals(False)
        self.table.setRowCount(len(s.rows))
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        for i, r in enumerate(s.rows):
            code = f"{r.code:.0f}" if float(r.code).is_integer() else _num(r.code)
            cells = (
                str(list(r.index)), _num(r.value), code, _num(r.scale), _num(r.zero_point, 4),
                _num(r.level), _num(r.dequantized), _num(r.error, 3), r.group,
            )  # fmt: skip
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if 0 < j < len(cells) - 1:
                    item.setTextAlignment(right)
                self.table.setItem(i, j, item)
        # one value for every row (its column hidden): said once, first, as a narrow pane
        # cuts the end of the line (the layer and format also head the detail pane)
        same = fit_columns(self.table)
        lead = f"{same} · " if same else ""
        self.header.setText(f"{lead}{s.tensor} in {s.format}: {s.formula}")
        self.header.setToolTip(f"{self.layer}: {summary(s)}\n{lead}{s.formula}")

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        fit_columns(self.table)
