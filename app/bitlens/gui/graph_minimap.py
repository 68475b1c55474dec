"""An overview of the whole graph beside the graph view, with the visible part outlined.

Every node is a dot in its fill colour (the same error and op colours as the
view), drawn once into a pixmap when the graph or its colours change; the
rectangle the view shows is drawn over it on every scroll. Clicking or
dragging in the map centres the view there.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QSizePolicy, QWidget

from bitlens.gui import colors
from bitlens.gui.graph_view import GraphView

WIDTH = 64
MARGIN = 4.0
# A long, narrow graph would be a hairline at one scale: the short side may be stretched
# up to this many times more than the long one.
STRETCH = 6.0


class GraphMinimap(QWidget):
    def __init__(self, view: GraphView, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("graphMinimap")
        self.view = view
        self._pixmap: QPixmap | None = None
        self.setFixedWidth(WIDTH)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Overview of the whole graph: the outlined part is in view; "
                        "click or drag to move there")  # fmt: skip
        view.rebuilt.connect(self._invalidate)
        view.recolored.connect(self._invalidate)
        view.viewChanged.connect(self.update)

    def sizeHint(self) -> QSize:
        return QSize(WIDTH, 200)

    # -- geometry ---------------------------------------------------------------------------
    def _frame(self) -> tuple[QRectF, float, float] | None:
        """The graph's scene rectangle and the scales from scene to map pixels (x, y)."""
        if self.view.is_pending:  # drawn once the view has built it (its rebuilt signal)
            return None
        rect = self.view.scene().sceneRect()  # set once per graph (the items' bounds padded)
        if rect.isEmpty():
            return None
        w, h = self.width() - 2 * MARGIN, self.height() - 2 * MARGIN
        if w <= 0 or h <= 0:
            return None
        kx, ky = w / rect.width(), h / rect.height()
        k = min(kx, ky)
        return rect, min(kx, k * STRETCH), min(ky, k * STRETCH)

    def _origin(self, rect: QRectF, kx: float, ky: float) -> QPointF:
        """Map position of the scene rect's top-left corner (the graph centred)."""
        return QPointF(
            (self.width() - rect.width() * kx) / 2, (self.height() - rect.height() * ky) / 2
        )

    def to_map(self, p: QPointF) -> QPointF:
        frame = self._frame()
        if frame is None:
            return QPointF()
        rect, kx, ky = frame
        o = self._origin(rect, kx, ky)
        return QPointF(o.x() + (p.x() - rect.left()) * kx, o.y() + (p.y() - rect.top()) * ky)

    def to_scene(self, p: QPointF) -> QPointF:
        frame = self._frame()
        if frame is None:
            return QPointF()
        rect, kx, ky = frame
        o = self._origin(rect, kx, ky)
        return QPointF(rect.left() + (p.x() - o.x()) / kx, rect.top() + (p.y() - o.y()) / ky)

    # -- drawing ----------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._pixmap = None
        self.update()

    def _render(self) -> QPixmap:
        pm = QPixmap(self.size())
        pm.fill(self.palette().color(QPalette.ColorRole.Base))
        frame = self._frame()
        if frame is None:
            return pm
        rect, kx, ky = frame
        # The frame and origin once, not per node through to_map: on PP-OCRv4 rec's 393
        # drawn nodes a render took 6.2 ms of the window's thread, now 2.2 ms, and each plan
        # edit and evaluation renders it again (benchmarks/bench_ui_stall.py, session 14).
        o = self._origin(rect, kx, ky)
        ox, oy, left, top = o.x(), o.y(), rect.left(), rect.top()
        view = self.view
        p = QPainter(pm)
        p.setPen(Qt.PenStyle.NoPen)
        for name in view.node_names:
            item = view.node_item(name)
            r = item.sceneBoundingRect()
            # at least 2 px so that every node shows, however long the graph
            w, h = max(r.width() * kx, 2.0), max(r.height() * ky, 2.0)
            fill = colors.HIGHLIGHT if item.highlighted else item.fill
            p.fillRect(QRectF(ox + (r.x() - left) * kx, oy + (r.y() - top) * ky, w, h), fill)
        p.end()
        return pm

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._pixmap is None or self._pixmap.size() != self.size():
            self._pixmap = self._render()
        p = QPainter(self)
        p.drawPixmap(0, 0, self._pixmap)
        frame = self._frame()
        if frame is not None:
            vis = self.view.visible_rect()
            tl, br = self.to_map(vis.topLeft()), self.to_map(vis.bottomRight())
            box = QRectF(tl, br).intersected(QRectF(self.rect()).adjusted(1, 1, -1, -1))
            if box.height() < 4:  # zoomed far in: still a visible mark
                box.adjust(0, -2, 0, 2)
            pen = QPen(colors.HIGHLIGHT, 2)
            p.setPen(pen)
            fill = QColor(colors.HIGHLIGHT)
            fill.setAlpha(40)
            p.setBrush(fill)
            p.drawRect(box)
        p.setPen(QPen(self.palette().color(QPalette.ColorRole.Mid)))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(self.rect().adjusted(0, 0, -1, -1))
        p.end()

    # -- navigation ---------------------------------------------------------------------------
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.view.centre_on_scene(self.to_scene(event.position()))
            event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self.view.centre_on_scene(self.to_scene(event.position()))
            event.accept()
