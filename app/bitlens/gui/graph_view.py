"""The model graph, drawn top to bottom, layers coloured by their error.

The layout comes from :mod:`bitlens.core.graph_layout` (computed once per
model); this view only places items and recolours them when the plan or
its evaluation changes. Wheel zooms around the mouse, dragging pans, F
fits; clicking a layer selects it everywhere (Ctrl-click adds/removes).
"""

from __future__ import annotations

import math
from itertools import pairwise

from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import (
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene, QGraphicsView, QWidget

from bitlens.core.graph_layout import GraphLayout, layout_model
from bitlens.core.model.types import ModelInfo
from bitlens.core.results import TensorError
from bitlens.gui import colors
from bitlens.gui.document import Document
from bitlens.gui.error_kind import ERROR_KINDS
from bitlens.gui.graph_node_item import GraphNodeItem
from bitlens.gui.text import fmt_db, fmt_format, fmt_shape

SLOT_W = 180.0
LAYER_H = 70.0
METRICS = {key: f"{label} SQNR" for key, (label, _tip) in ERROR_KINDS.items()}


class GraphView(QGraphicsView):
    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("graphView")
        self._doc = document
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._items: dict[str, GraphNodeItem] = {}
        self._edges: list[QGraphicsPathItem] = []
        self.layout_result: GraphLayout | None = None
        self._info: ModelInfo | None = None
        self.color_by = document.error_kind.kind
        document.error_kind.changed.connect(self.set_color_by)
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.BoundingRectViewportUpdate)
        document.modelChanged.connect(self._rebuild)
        document.planChanged.connect(self._recolor)
        document.evaluationChanged.connect(self._recolor)
        document.selection.changed.connect(self._on_selection_changed)
        self._rebuild()

    # -- public -----------------------------------------------------------------------------
    def node_item(self, name: str) -> GraphNodeItem:
        return self._items[name]

    def set_color_by(self, key: str) -> None:
        if key not in METRICS:
            raise ValueError(f"unknown metric {key!r}")
        self.color_by = key
        self._recolor()

    def fit(self) -> None:
        rect = self._scene.itemsBoundingRect()
        if rect.isEmpty():
            return
        self.fitInView(rect.adjusted(-20, -20, 20, 20), Qt.AspectRatioMode.KeepAspectRatio)
        # Fitting a long model would make nodes unreadably small: keep a floor and
        # show the top of the graph instead.
        if self.transform().m11() < 0.45:
            self.resetTransform()
            self.scale(0.45, 0.45)
            self.centerOn(rect.center().x(), rect.top() + self.viewport().height())

    def zoom(self, factor: float) -> None:
        current = self.transform().m11()
        factor = min(max(factor, 0.05 / current), 4.0 / current)
        self.scale(factor, factor)

    # -- building -----------------------------------------------------------------------------
    def _rebuild(self) -> None:
        info = self._doc.info
        if info is not None and info is self._info:
            self._recolor()  # the same model with other data: keep the view where it is
            return
        self._info = info
        self._scene.clear()
        self._items.clear()
        self._edges.clear()
        info = self._doc.info
        if info is None:
            self.layout_result = None
            return
        lay = layout_model(info, x_gap=SLOT_W, y_gap=LAYER_H)
        self.layout_result = lay
        edge_pen = _edge_pen(self.palette())
        for route in lay.edges:
            item = QGraphicsPathItem(_edge_path(route.points))
            item.setPen(edge_pen)
            item.setZValue(0)
            item.setToolTip(route.tensor)
            self._scene.addItem(item)
            self._edges.append(item)
        nodes = {n.name: n for n in info.nodes}
        layers = {layer.name: layer for layer in info.layers}
        for name, place in lay.nodes.items():
            item = _make_item(name, info, nodes, layers)
            item.setPos(place.x, place.y)
            self._scene.addItem(item)
            self._items[name] = item
        self._scene.setSceneRect(self._scene.itemsBoundingRect().adjusted(-40, -40, 40, 40))
        self._recolor()
        self._on_selection_changed(None)
        self.fit()

    def _recolor(self) -> None:
        pal = self.palette()
        ink_plain = pal.color(QPalette.ColorRole.ButtonText)
        border = pal.color(QPalette.ColorRole.Mid).darker(120)
        if colors.is_dark(pal):
            border = pal.color(QPalette.ColorRole.Light)
        plain = colors.plain_node_color(pal)
        io = pal.color(QPalette.ColorRole.AlternateBase)
        float_fill = colors.float_layer_color(pal)
        ev = self._doc.evaluation
        plan = self._doc.plan
        scale = self._doc.error_kind.scale(ev)
        for name, item in self._items.items():
            if item.is_io:
                item.set_colors(io, ink_plain, border)
                continue
            if not item.is_layer:
                item.set_colors(plain, ink_plain, border)
                continue
            err = self._error(name)
            fill = colors.error_color(None if err is None else err.sqnr_db, scale)
            if fill is None:
                item.set_colors(float_fill, _ink_on(float_fill), border)
            else:
                item.set_colors(fill, colors.INK, border)
            choice = plan[name] if plan is not None else None
            lines = [f"{name} ({item.title})"]
            if choice is not None:
                w = None if choice.weight is None else choice.weight.name
                a = None if choice.activation is None else choice.activation.name
                lines.append(f"weights: {fmt_format(w)}   activations: {fmt_format(a)}")
            r = None if ev is None else ev.layers.get(name)
            if r is not None:
                for label, e in (("weight", r.weight), ("local", r.local), ("accum.", r.accumulated)):
                    if e is not None:
                        lines.append(f"{label} SQNR: {fmt_db(e.sqnr_db)}")
            item.setToolTip("\n".join(lines))
        pen = _edge_pen(pal)
        for edge in self._edges:
            edge.setPen(pen)

    def _error(self, name: str) -> TensorError | None:
        ev = self._doc.evaluation
        if ev is None:
            return None
        r = ev.layers.get(name)
        if r is None:
            return None
        return {"accumulated": r.accumulated, "local": r.local, "weight": r.weight}[self.color_by]

    def _on_selection_changed(self, origin: object) -> None:
        selected = set(self._doc.selection.names)
        for name, item in self._items.items():
            item.set_highlighted(name in selected)
        cur = self._doc.selection.current
        if origin is not self and cur in self._items:
            item = self._items[cur]
            # Centre a node that is off screen; leave the view alone if it is in sight.
            visible = self.mapToScene(self.viewport().rect()).boundingRect()
            if not visible.contains(item.sceneBoundingRect()):
                self.centerOn(item)

    # -- interaction ----------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            item = self.itemAt(event.position().toPoint())
            if isinstance(item, GraphNodeItem) and item.is_layer:
                sel = self._doc.selection
                if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
                    sel.toggle(item.name, origin=self)
                else:
                    sel.set([item.name], item.name, origin=self)
                event.accept()
                return
        super().mousePressEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.itemAt(event.position().toPoint()) is None:
            self.fit()
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom(math.pow(1.2, steps))
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_F:
            self.fit()
        elif key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(1.25)
        elif key == Qt.Key.Key_Minus:
            self.zoom(0.8)
        else:
            super().keyPressEvent(event)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._recolor()


def _make_item(
    name: str, info: ModelInfo, nodes: dict, layers: dict
) -> GraphNodeItem:
    if name.startswith(("input:", "output:")):
        kind, _, tensor = name.partition(":")
        item = GraphNodeItem(name, tensor, "", is_layer=False, is_io=True)
        t = next((t for t in (*info.inputs, *info.outputs) if t.name == tensor), None)
        shape = "" if t is None else f" {fmt_shape(t.shape)} {t.dtype}"
        item.setToolTip(f"model {kind} {tensor}{shape}")
        return item
    node = nodes.get(name)
    op = node.op_type if node is not None else "?"
    item = GraphNodeItem(name, op, name, is_layer=name in layers, is_io=False)
    if node is not None and node.graph_path:
        item.setToolTip(f"{name} ({op}) inside {node.graph_path}")
    else:
        item.setToolTip(f"{name} ({op})")
    return item


def _edge_path(points: tuple[tuple[float, float], ...]) -> QPainterPath:
    """A smooth vertical S-curve through the route's points."""
    path = QPainterPath(QPointF(*points[0]))
    for (x0, y0), (x1, y1) in pairwise(points):
        dy = (y1 - y0) / 2
        path.cubicTo(QPointF(x0, y0 + dy), QPointF(x1, y1 - dy), QPointF(x1, y1))
    return path


def _edge_pen(pal: QPalette) -> QPen:
    role = QPalette.ColorRole.Light if colors.is_dark(pal) else QPalette.ColorRole.Dark
    color = QColor(pal.color(role))
    color.setAlpha(170)
    return QPen(color, 1.2)


def _ink_on(fill: QColor) -> QColor:
    return QColor(20, 20, 20) if fill.lightnessF() > 0.5 else QColor(235, 235, 235)

