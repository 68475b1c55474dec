"""The properties of the graph's focused node: op, attributes, shapes, weight statistics.

Filled from :class:`bitlens.core.node_details.NodeIndex` (one per opened model)
whenever the focused node, the plan (a weight's format) or the model changes.
The statistics of a weight are computed once per weight and kept; those of a
large weight (a 30522 x 384 embedding took most of a second) in a worker
thread, the pane saying "computing…" until they arrive.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QHeaderView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)
from superqt.utils import create_worker

from bitlens.core.errors import BitlensError
from bitlens.core.node_details import NodeDetails, NodeIndex, ValueDesc
from bitlens.gui.document import Document
from bitlens.gui.graph_view import GraphView
from bitlens.gui.text import fmt_bytes, fmt_float, fmt_shape, shape_note
from bitlens.gui.thread_priority import lowered

OWN_KEYS = ("op type", "name", "inside", "quantizable", "shape", "bytes", "format",
            "min / max", "mean / std", "dtype")  # fmt: skip
MIN_VALUE_WIDTH = 60  # px the values keep before the pane's own words are cut
NAME_SHARE = 0.55  # of the pane's width, at most, for the property names
EMPTY = "Click a node in the graph (or find one) to see its properties."
# Weights of more values get their statistics off the UI thread (about 10 ms of numpy here).
STATS_INLINE = 1 << 20


class GraphProperties(QTreeWidget):
    def __init__(self, document: Document, view: GraphView, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("graphProperties")
        self._doc = document
        self.view = view
        self._index: NodeIndex | None = None
        self.details: NodeDetails | None = None
        self._stats_worker = None  # the running statistics worker, if any
        self._stats_asked: set[str] = set()  # nodes whose statistics a worker was asked for
        self.setColumnCount(2)
        self.setHeaderLabels(["Property", "Value"])
        # names as wide as they need up to NAME_SHARE of the pane (long tensor names
        # elide, whole in their tooltips): the values never run off a narrow pane
        self.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.header().setStretchLastSection(True)
        self.setRootIsDecorated(True)
        # Values wrap onto as many lines as they need: at 1280x720 the value column is about
        # 110 px and "512×128×1×1 float32 (constant)" (open_nsfw) was cut to its first
        # word. Rows then differ in height, and QTreeView keeps each row's height from
        # its last layout, so a column resize lays the rows out again.
        self.setUniformRowHeights(False)
        self.setWordWrap(True)
        self.setItemDelegateForColumn(1, _WrappedValues(self))
        self.header().sectionResized.connect(self._on_section_resized)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setAlternatingRowColors(True)
        view.focusChanged.connect(self._refresh)
        document.modelChanged.connect(self._on_model)
        document.planChanged.connect(self._refresh)
        self._refresh()

    def _fit_columns(self) -> None:
        room = self.viewport().width()
        width = min(self.sizeHintForColumn(0) + 8, int(room * NAME_SHARE))
        # the pane's own words stay whole ("quantizable layer" read "quanti… layer" at
        # 1280x720); only tensor and attribute names elide
        words = max(self.fontMetrics().horizontalAdvance(k) for k in OWN_KEYS)
        own = words + 2 * self.indentation() + 16  # a row sits two levels in (root decorated)
        self.setColumnWidth(0, max(width, min(own, room - MIN_VALUE_WIDTH)))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_columns()

    def _on_section_resized(self, *_args: object) -> None:
        self.scheduleDelayedItemsLayout()  # the wrapped rows' heights follow the new width

    def _on_model(self) -> None:
        self._doc.retire(self._index)  # the last model's index, freed on a later pass
        self._index = None
        self._stats_asked.clear()
        self._refresh()

    def _node_index(self) -> NodeIndex | None:
        session = self._doc.session
        if session is None:
            return None
        if self._index is None or self._index.model is not session.model:
            self._index = NodeIndex(session.model)
        return self._index

    def _refresh(self, *_args: object) -> None:
        self.clear()
        self.details = None
        name = self.view.focused
        # the index only for a focused node: a model's change refreshes the pane with none
        # focused, in the pass that also fills the table (issue 11)
        index = self._node_index() if name else None
        if not name or index is None:
            self._message(EMPTY)
            return
        if name.startswith(("input:", "output:")):
            self._io(name)
            return
        try:
            d = index.details(name, self._doc.plan, stats_limit=STATS_INLINE)
        except (KeyError, BitlensError, ValueError) as exc:
            self._message(f"{name}: no details ({exc})")
            return
        self.details = d
        if any(w.pending for w in d.weights):
            self._compute_stats(index, name)
        info = self._doc.info
        node = self._section("Node", d.name if info is None else info.short_names.get(d.name, d.name))
        node.setToolTip(1, d.name)
        self._row(node, "op type", d.op_type + ("" if d.domain == "ai.onnx" else f" ({d.domain})"))
        self._row(node, "name", d.name)
        if d.graph_path:
            self._row(node, "inside", d.graph_path)
        # a short key: the name column keeps it whole in a 1280 px window's narrow pane
        row = self._row(node, "quantizable", "yes" if d.is_layer else "no")
        row.setToolTip(0, "Whether Bitlens can quantize this node's weights (a row of the table)")
        if d.attributes:
            attrs = self._section("Attributes", str(len(d.attributes)))
            for key, value in d.attributes:
                self._row(attrs, key, value)
        ins = self._section("Inputs", str(len(d.inputs)))
        for v in d.inputs:
            self._value_row(ins, v)
        outs = self._section("Outputs", str(len(d.outputs)))
        for v in d.outputs:
            self._value_row(outs, v)
        for w in d.weights:
            sec = self._section(f"Weight {w.name}", w.format)
            self._row(sec, "shape", f"{fmt_shape(w.shape)} {w.dtype}")
            self._row(sec, "bytes", f"{fmt_bytes(w.nbytes)} ({w.nbytes} B)")
            self._row(sec, "format", w.format)
            if w.pending:
                wait = "computing…" if self._stats_worker is not None else "unavailable"
                self._row(sec, "min / max", wait)
                self._row(sec, "mean / std", wait)
                continue
            self._row(sec, "min / max", f"{fmt_float(w.min)} / {fmt_float(w.max)}")
            self._row(sec, "mean / std", f"{fmt_float(w.mean)} / {fmt_float(w.std)}")
        self.expandAll()
        self._fit_columns()

    def _compute_stats(self, index: NodeIndex, name: str) -> None:
        """Compute (and keep in ``index``) the node's weight statistics in a worker thread,
        then show them if the node is still the focused one."""
        if self._stats_worker is not None or name in self._stats_asked:
            return  # one at a time (the pane refreshes when it is done), and once per node
        self._stats_asked.add(name)
        worker = create_worker(
            lowered(index.details), name, _start_thread=False, _ignore_errors=True
        )
        self._stats_worker = worker
        worker.finished.connect(self._on_stats_done)  # a slot: dropped if the pane is gone
        worker.start()

    def _on_stats_done(self) -> None:
        self._stats_worker = None
        self._refresh()  # the statistics are in the index now (or fail again, said as such)

    def _io(self, name: str) -> None:
        kind, _, tensor = name.partition(":")
        info = self._doc.info
        t = None if info is None else next(
            (t for t in (*info.inputs, *info.outputs) if t.name == tensor), None
        )  # fmt: skip
        sec = self._section(f"Model {kind}", tensor)
        self._row(sec, "name", tensor)
        if t is not None:
            row = self._row(sec, "shape", fmt_shape(t.shape))
            _note(row, t.shape)
            self._row(sec, "dtype", t.dtype)
        self.expandAll()
        self._fit_columns()

    def _message(self, text: str) -> None:
        item = QTreeWidgetItem(self, [text])
        item.setFirstColumnSpanned(True)
        item.setToolTip(0, text)

    def _section(self, title: str, value: str) -> QTreeWidgetItem:
        item = QTreeWidgetItem(self, [title, value])
        f = item.font(0)
        f.setBold(True)
        item.setFont(0, f)
        item.setToolTip(1, value)
        return item

    def _row(self, parent: QTreeWidgetItem, key: str, value: str) -> QTreeWidgetItem:
        item = QTreeWidgetItem(parent, [key, value])
        item.setToolTip(0, key)
        item.setToolTip(1, value)
        return item

    def _value_row(self, parent: QTreeWidgetItem, v: ValueDesc) -> None:
        _note(self._row(parent, v.name, _value_text(v)), v.shape)

    def row_text(self, section: str, key: str) -> str | None:
        """The value shown for ``key`` under the section starting with ``section``."""
        for i in range(self.topLevelItemCount()):
            top = self.topLevelItem(i)
            if top.text(0).startswith(section):
                for j in range(top.childCount()):
                    if top.child(j).text(0) == key:
                        return top.child(j).text(1)
        return None


class _WrappedValues(QStyledItemDelegate):
    """Row heights for values wrapped to the value column's width. QTreeView asks the
    delegate for a row's height without the column's width (qtreeview.cpp,
    indexRowSizeHint), so Qt's own delegate measures the text on one line."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        size = super().sizeHint(option, index)
        tree = self.parent()
        text = index.data()
        if not isinstance(tree, QTreeWidget) or not text:
            return size
        style = tree.style()
        margin = style.pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, tree) + 1
        width = max(1, tree.columnWidth(1) - 2 * margin)
        fm = option.fontMetrics
        lines = fm.boundingRect(QRect(0, 0, width, 1 << 20), Qt.TextFlag.TextWordWrap, text)
        pad = max(0, size.height() - fm.height())  # the style's room above and below a line
        return QSize(size.width(), max(size.height(), lines.height() + pad))


def _value_text(v: ValueDesc) -> str:
    shape = fmt_shape(v.shape)
    text = f"{shape} {v.dtype}".strip() if v.dtype or v.shape is not None else "shape unknown"
    if v.constant:
        text += " (constant" + (f": {v.value})" if v.value else ")")
    return text


def _note(row: QTreeWidgetItem, shape: tuple | None) -> None:
    """Say in the value's tooltip what its "?" sizes are (an invented ``unk__N`` name)."""
    if shape is not None and (note := shape_note(shape)):
        row.setToolTip(1, f"{row.text(1)}\n{note}")
