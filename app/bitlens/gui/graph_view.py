"""The model graph, drawn top to bottom, layers coloured by their error.

The layout comes from :mod:`bitlens.core.graph_layout` (computed once per
model); this view only places items and recolours them when the plan or
its evaluation changes. Wheel zooms around the mouse, dragging pans, F
fits the whole graph, Z zooms to the selection; clicking a layer selects it
everywhere (Ctrl-click adds/removes). Clicking any node, a layer or not,
focuses it: the properties pane shows the focused node.
"""

from __future__ import annotations

import math
from itertools import pairwise

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsScene, QGraphicsView, QWidget

from bitlens.core.graph_layout import GraphLayout
from bitlens.core.model.types import ModelInfo
from bitlens.core.results import TensorError
from bitlens.gui import colors
from bitlens.gui.document import Document
from bitlens.gui.error_kind import ERROR_KINDS
from bitlens.gui.graph_geometry import view_layout
from bitlens.gui.graph_node_item import NODE_H, GraphNodeItem
from bitlens.gui.graph_ops import op_color
from bitlens.gui.text import fmt_db, fmt_format, fmt_shape

METRICS = {key: f"{label} SQNR" for key, (label, _tip) in ERROR_KINDS.items()}
MAX_ZOOM = 4.0
MIN_ZOOM = 0.05  # or less, when fitting the whole graph needs less
READABLE = 1.0  # the scale a found node is shown at when the view is zoomed out further
SELECTION_ZOOM = 1.5  # zoom to selection never magnifies more than this
FIRST_VIEW_MIN = 0.6  # a model opens at least this large (op types legible)
SMOOTH_FROM = 0.25  # antialiased drawing from this scale up
# Zoomed out until boxes are thinner than this many pixels, every layer is also marked
# by a box of OVERVIEW_MARK pixels in its error colour, drawn over the graph: a fitted
# model of a thousand nodes reads as a strip of its layers' errors, not a grey thread.
OVERVIEW_BELOW_PX = 6.0
OVERVIEW_MARK = (12.0, 5.0)


class GraphView(QGraphicsView):
    focusChanged = Signal(str)  # the focused node's name ("" when none)
    viewChanged = Signal()  # the visible part of the scene moved or was scaled
    rebuilt = Signal()  # a new model's graph was laid out
    recolored = Signal()  # node colours changed (plan, evaluation, error kind, palette)

    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("graphView")
        self._doc = document
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._items: dict[str, GraphNodeItem] = {}
        self._bounds = QRectF()  # of every item, once the graph is built
        self._edges: list[QGraphicsPathItem] = []
        self._edges_of: dict[str, list[QGraphicsPathItem]] = {}  # node -> its in and out edges
        self.focused: str | None = None
        self.layout_result: GraphLayout | None = None
        self._info: ModelInfo | None = None
        self._pending: ModelInfo | None = None  # a model whose graph is still to be drawn
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
        self.horizontalScrollBar().valueChanged.connect(self.viewChanged)
        self.verticalScrollBar().valueChanged.connect(self.viewChanged)
        self.viewChanged.connect(self._update_hints)
        self._rebuild()

    # -- public -----------------------------------------------------------------------------
    def node_item(self, name: str) -> GraphNodeItem:
        self._build_pending()
        return self._items[name]

    @property
    def node_names(self) -> list[str]:
        """The drawn nodes, model inputs first, in topological order."""
        self._build_pending()
        return list(self._items)

    @property
    def is_pending(self) -> bool:
        """A model's graph is still to be drawn (on a later turn; ``rebuilt`` follows)."""
        return self._pending is not None

    @property
    def scale_factor(self) -> float:
        return self.transform().m11()

    def visible_rect(self) -> QRectF:
        """The part of the scene the viewport shows."""
        return self.mapToScene(self.viewport().rect()).boundingRect()

    def graph_rect(self) -> QRectF:
        self._build_pending()
        return QRectF(self._bounds)

    def set_color_by(self, key: str) -> None:
        if key not in METRICS:
            raise ValueError(f"unknown metric {key!r}")
        self.color_by = key
        self._recolor()

    def fit(self) -> None:
        """The whole graph in the view, however long: boxes without text when it has to
        (the minimap and the find box lead on from there)."""
        self._build_pending()
        rect = QRectF(self._bounds)
        if rect.isEmpty():
            return
        self._fit_rect(rect.adjusted(-20, -20, 20, 20), MAX_ZOOM)

    def zoom_to_selection(self) -> bool:
        """Fit the selected layers (and the focused node), magnifying at most
        ``SELECTION_ZOOM``; False when nothing is selected."""
        self._build_pending()
        names = [*self._doc.selection.names, *([self.focused] if self.focused else [])]
        rects = [self._items[n].sceneBoundingRect() for n in names if n in self._items]
        if not rects:
            return False
        rect = rects[0]
        for r in rects[1:]:
            rect = rect.united(r)
        self._fit_rect(rect.adjusted(-40, -40, 40, 40), SELECTION_ZOOM)
        return True

    def zoom(self, factor: float) -> None:
        current = self.transform().m11()
        factor = min(max(factor, self._min_zoom() / current), MAX_ZOOM / current)
        self.scale(factor, factor)
        self.viewChanged.emit()

    def show_node(self, name: str, *, select: bool = True) -> None:
        """Focus node ``name``, select it if it is a layer, and centre it at a readable
        scale (the find box's action)."""
        self._build_pending()
        item = self._items.get(name)
        if item is None:
            return
        self.set_focus(name)
        if select and item.is_layer:
            self._doc.selection.set([name], name, origin=self)
        if self.transform().m11() < READABLE:
            self.resetTransform()
            self.scale(READABLE, READABLE)
        self.centerOn(item)
        self.viewChanged.emit()

    def set_focus(self, name: str | None) -> None:
        self._build_pending()
        if name == self.focused or (name is not None and name not in self._items):
            return
        old, self.focused = self.focused, name
        if old in self._items:
            self._items[old].set_focused(False)
        if name is not None:
            self._items[name].set_focused(True)
        self._paint_edges()
        self.focusChanged.emit(name or "")

    def centre_on_scene(self, point: QPointF) -> None:
        """Centre the view on a scene point (the minimap's click and drag)."""
        self.centerOn(point)
        self.viewChanged.emit()

    def _first_view(self) -> None:
        """A new model: the whole graph when its text stays legible, else its top at a
        readable scale (Fit, the minimap and the find box reach the rest)."""
        self.fit()
        rect = self._bounds
        if self.transform().m11() < FIRST_VIEW_MIN and not rect.isEmpty():
            self.resetTransform()
            self.scale(FIRST_VIEW_MIN, FIRST_VIEW_MIN)
            half = self.viewport().height() / FIRST_VIEW_MIN / 2
            self.centerOn(rect.center().x(), rect.top() + half - 20)
            self.viewChanged.emit()

    def _fit_rect(self, rect: QRectF, most: float) -> None:
        self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        s = self.transform().m11()
        if s > most:
            self.resetTransform()
            self.scale(most, most)
            self.centerOn(rect.center())
        self.viewChanged.emit()

    def overview_marks(self) -> bool:
        """Whether layers are drawn as overview marks at the current scale."""
        return self.transform().m11() * NODE_H < OVERVIEW_BELOW_PX

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        super().drawForeground(painter, rect)
        if not self.overview_marks():
            return
        s = self.transform().m11()
        w, h = OVERVIEW_MARK[0] / s, OVERVIEW_MARK[1] / s
        painter.setPen(Qt.PenStyle.NoPen)
        marked = []
        for item in self._items.values():
            if not item.is_layer:
                continue
            c = item.pos()
            r = QRectF(c.x() - w / 2, c.y() - h / 2, w, h)
            if r.intersects(rect):
                if item.highlighted or item.focused:
                    marked.append(r)  # drawn last, on top
                else:
                    painter.fillRect(r, item.fill)
        for r in marked:
            painter.fillRect(r.adjusted(-w / 4, -h / 2, w / 4, h / 2), colors.HIGHLIGHT)

    def _mark_at(self, p: QPointF) -> GraphNodeItem | None:
        """The layer whose overview mark covers scene point ``p`` (the nearest one)."""
        s = self.transform().m11()
        w, h = OVERVIEW_MARK[0] / s, OVERVIEW_MARK[1] / s
        hits = [
            it for it in self._items.values()
            if it.is_layer and abs(it.pos().x() - p.x()) <= w / 2
            and abs(it.pos().y() - p.y()) <= h / 2
        ]  # fmt: skip
        return min(hits, key=lambda it: abs(it.pos().y() - p.y()), default=None)

    def _update_hints(self) -> None:
        """Antialiasing only where it shows: zoomed far out, boxes are a few pixels and a
        thousand antialiased curves make every scroll of a fitted graph slow."""
        smooth = self.transform().m11() >= SMOOTH_FROM
        if smooth != bool(self.renderHints() & QPainter.RenderHint.Antialiasing):
            self.setRenderHint(QPainter.RenderHint.Antialiasing, smooth)

    def _min_zoom(self) -> float:
        """Small enough to show the whole graph."""
        rect = self._bounds
        vp = self.viewport().rect()
        if rect.isEmpty() or vp.isEmpty():
            return MIN_ZOOM
        fit = min(vp.width() / (rect.width() + 40), vp.height() / (rect.height() + 40))
        return min(MIN_ZOOM, fit * 0.9)

    # -- building -----------------------------------------------------------------------------
    def _rebuild(self) -> None:
        info = self._doc.info
        if info is not None and info is self._info:
            self._recolor()  # the same model with other data: keep the view where it is
            return
        self._info = info
        self._scene.clear()
        # The scene rect was set explicitly for the last graph; clearing the items keeps it,
        # and the minimap would read the old bounds and build the new graph on its paint.
        self._scene.setSceneRect(QRectF())
        self._items.clear()
        self._bounds = QRectF()
        self._edges.clear()
        self._edges_of.clear()
        self.focused = None
        self.focusChanged.emit("")
        self.layout_result = None
        if info is None:
            self._pending = None
            self.rebuilt.emit()
            return
        # Laid out and drawn on a later event-loop pass, after the window has painted the
        # new model's table and panes (both in one pass were the open's longest stall on
        # PP-OCRv4 rec, issue 11; docs/benchmarks.md "uiopen (session 15)"), and in a pass
        # of its own (gui/view_passes.py). Readers of the graph build it first.
        self._pending = info
        self._doc.view_passes.post(self._build_pending)

    def _build_pending(self) -> None:
        self._doc.view_passes.cancel(self._build_pending)
        info, self._pending = self._pending, None
        if info is None or info is not self._info:
            return
        session = self._doc.session
        # laid out by the job that opened the model (graph_geometry.py)
        lay = session.layout if session is not None and session.info is info else view_layout(info)
        self.layout_result = lay
        edge_pen = _edge_pen(self.palette())
        for route in lay.edges:
            item = QGraphicsPathItem(_edge_path(route.points))
            item.setPen(edge_pen)
            item.setZValue(0)
            item.setToolTip(f"{route.tensor}: {route.src} → {route.dst}")
            self._scene.addItem(item)
            self._edges.append(item)
            self._edges_of.setdefault(route.src, []).append(item)
            self._edges_of.setdefault(route.dst, []).append(item)
        nodes = {n.name: n for n in info.nodes}
        layers = {layer.name: layer for layer in info.layers}
        for name, place in lay.nodes.items():
            item = _make_item(name, info, nodes, layers)
            item.setPos(place.x, place.y)
            self._scene.addItem(item)
            self._items[name] = item
        # Items never move once placed: their bounds, measured once (each measure asks
        # every node item's boundingRect, a call into Python)
        self._bounds = self._scene.itemsBoundingRect()
        self._scene.setSceneRect(self._bounds.adjusted(-40, -40, 40, 40))
        self._recolor()
        self._first_view()
        # then the selected layer (the first, on open) in sight: open_nsfw's first conv sits
        # below 30 rows of input casts and reshapes, and the first view showed only those
        self._on_selection_changed(None)
        self.rebuilt.emit()

    def _recolor(self) -> None:
        pal = self.palette()
        ink_plain = pal.color(QPalette.ColorRole.ButtonText)
        border = pal.color(QPalette.ColorRole.Mid).darker(120)
        if colors.is_dark(pal):
            border = pal.color(QPalette.ColorRole.Light)
        io = pal.color(QPalette.ColorRole.AlternateBase)
        float_fill = colors.float_layer_color(pal)
        ev = self._doc.evaluation
        plan = self._doc.plan
        scale = self._doc.error_kind.scale(ev)
        # one fill per op type, not per node: 344 of PP-OCRv4 rec's 393 boxes are ops
        op_fills: dict[str, tuple[QColor, QColor]] = {}
        for name, item in self._items.items():
            if item.is_io:
                item.set_colors(io, ink_plain, border)
                continue
            if not item.is_layer:
                fill_ink = op_fills.get(item.title)
                if fill_ink is None:
                    fill = op_color(item.title, pal)
                    fill_ink = op_fills[item.title] = (fill, _ink_on(fill))
                item.set_colors(*fill_ink, border)
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
        self._paint_edges()
        self.recolored.emit()

    def _paint_edges(self) -> None:
        """Every edge in the plain pen; those of the focused node in the highlight."""
        pal = self.palette()
        pen = _edge_pen(pal)
        for edge in self._edges:
            edge.setPen(pen)
            edge.setZValue(0)
        if self.focused is not None:
            hot = QPen(colors.HIGHLIGHT, 2.5)
            hot.setCosmetic(True)
            for edge in self._edges_of.get(self.focused, ()):
                edge.setPen(hot)
                edge.setZValue(0.5)

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
            self.set_focus(cur)
            item = self._items[cur]
            # Centre a node that is off screen; leave the view alone if it is in sight.
            visible = self.mapToScene(self.viewport().rect()).boundingRect()
            if not visible.contains(item.sceneBoundingRect()):
                self.centerOn(item)

    # -- interaction ----------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            item = self.itemAt(event.position().toPoint())
            if self.overview_marks():  # the layers' marks lie over the tiny boxes
                item = self._mark_at(self.mapToScene(event.position().toPoint())) or item
            if isinstance(item, GraphNodeItem):
                self.set_focus(item.name)
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
        elif key == Qt.Key.Key_Z:
            self.zoom_to_selection()
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

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.viewChanged.emit()


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
    # A layer's box shows the part of its name that tells it apart; the tooltip, the
    # properties pane and find keep the full name.
    shown = info.short_names.get(name, name)
    item = GraphNodeItem(name, op, shown, is_layer=name in layers, is_io=False)
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
    """Edges in the text colour, slightly see-through, one and a half pixels on screen at
    any zoom (cosmetic), so they never fade into the background."""
    color = QColor(pal.color(QPalette.ColorRole.WindowText))
    color.setAlpha(150)
    pen = QPen(color, 1.5)
    pen.setCosmetic(True)
    return pen


def _ink_on(fill: QColor) -> QColor:
    return QColor(20, 20, 20) if fill.lightnessF() > 0.5 else QColor(235, 235, 235)

