"""One node of the graph view: a rounded box with the op type and node name."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from bitlens.gui import colors
from bitlens.gui.text import elide

NODE_W = 150.0
NODE_H = 40.0
IO_H = 26.0  # model inputs and outputs are drawn smaller


class GraphNodeItem(QGraphicsItem):
    def __init__(self, name: str, title: str, subtitle: str, *, is_layer: bool, is_io: bool):
        super().__init__()
        self.name = name
        self.title = title
        self.subtitle = subtitle
        self.is_layer = is_layer
        self.is_io = is_io
        self.fill = QColor(200, 200, 200)
        self.ink = QColor(20, 20, 20)
        self.border = QColor(90, 90, 90)
        self.highlighted = False
        h = IO_H if is_io else NODE_H
        self._rect = QRectF(-NODE_W / 2, -h / 2, NODE_W, h)
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
        self.setCursor(Qt.CursorShape.PointingHandCursor if is_layer else Qt.CursorShape.ArrowCursor)
        self.setZValue(1)

    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-3, -3, 3, 3)

    def set_colors(self, fill: QColor, ink: QColor, border: QColor) -> None:
        self.fill, self.ink, self.border = fill, ink, border
        self.update()

    def set_highlighted(self, on: bool) -> None:
        if on != self.highlighted:
            self.highlighted = on
            self.update()

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        pen = QPen(colors.HIGHLIGHT if self.highlighted else self.border)
        pen.setWidthF(3.0 if self.highlighted else 1.0)
        pen.setCosmetic(self.highlighted)
        painter.setPen(pen)
        painter.setBrush(QBrush(self.fill))
        radius = self._rect.height() / 2 if self.is_io else 6.0
        painter.drawRoundedRect(self._rect, radius, radius)
        if lod < 0.35:
            return  # too small to read: boxes only
        painter.setPen(self.ink)
        font = QFont(painter.font())
        font.setPointSizeF(9.0)
        font.setBold(True)
        painter.setFont(font)
        if self.is_io or not self.subtitle:
            painter.drawText(self._rect, Qt.AlignmentFlag.AlignCenter, elide(self.title, 22))
            return
        top = QRectF(self._rect.left(), self._rect.top() + 3, NODE_W, NODE_H / 2 - 2)
        bottom = QRectF(self._rect.left(), self._rect.center().y(), NODE_W, NODE_H / 2 - 3)
        painter.drawText(top, Qt.AlignmentFlag.AlignCenter, elide(self.title, 22))
        font.setBold(False)
        font.setPointSizeF(8.0)
        painter.setFont(font)
        painter.drawText(bottom, Qt.AlignmentFlag.AlignCenter, elide(self.subtitle, 26))
