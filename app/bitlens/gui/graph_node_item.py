"""One node of the graph view: a rounded box with the op type and node name.

Text is drawn at a size that is legible on screen whatever the zoom (level
of detail): zoomed in, the op type and the node name; further out, the op
type alone in a font scaled up to stay at least ``MIN_TEXT_PX`` on screen;
when even that no longer fits the box, no text at all (the fill colour
carries the error or the op family). Qt's ``levelOfDetailFromTransform`` is
the scale from scene to screen.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from bitlens.gui import colors

NODE_W = 150.0
NODE_H = 40.0
IO_H = 26.0  # model inputs and outputs are drawn smaller
MIN_TEXT_PX = 10.0  # smallest text drawn, in screen pixels
TEXT_PX = 12.0  # the title's size at 1:1
PAD = 6.0


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
        self.focused = False
        h = IO_H if is_io else NODE_H
        self._rect = QRectF(-NODE_W / 2, -h / 2, NODE_W, h)
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setZValue(1)

    def boundingRect(self) -> QRectF:
        return self._rect.adjusted(-4, -4, 4, 4)

    def set_colors(self, fill: QColor, ink: QColor, border: QColor) -> None:
        if (fill, ink, border) == (self.fill, self.ink, self.border):
            return  # every evaluation recolours every box; most ops' stay as they were
        self.fill, self.ink, self.border = fill, ink, border
        self.update()

    def set_highlighted(self, on: bool) -> None:
        if on != self.highlighted:
            self.highlighted = on
            self.update()

    def set_focused(self, on: bool) -> None:
        """The node the properties pane shows (any node, not only layers)."""
        if on != self.focused:
            self.focused = on
            self.update()

    def text_mode(self, lod: float) -> str:
        """What is drawn at scale ``lod``: "full" (title and name), "title" or "none"."""
        box_px = self._rect.height() * lod
        if self.subtitle and not self.is_io and lod * TEXT_PX >= MIN_TEXT_PX and box_px >= 34:
            return "full"
        if box_px >= MIN_TEXT_PX + 3 and NODE_W * lod >= 28:
            return "title"
        return "none"

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        marked = self.highlighted or self.focused
        pen = QPen(colors.HIGHLIGHT if marked else self.border)
        # cosmetic: the outline keeps its screen width, so a zoomed-out box stays outlined
        pen.setCosmetic(True)
        pen.setWidthF(3.0 if self.highlighted else 2.0 if self.focused else 1.0)
        if self.focused and not self.highlighted:
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(QBrush(self.fill))
        mode = self.text_mode(lod)
        if mode == "none":
            # a few pixels on screen: a plain rectangle costs a fraction of a rounded one,
            # and a fitted graph of thousands of nodes repaints on every scroll
            painter.drawRect(self._rect)
            return
        radius = self._rect.height() / 2 if self.is_io else 6.0
        painter.drawRoundedRect(self._rect, radius, radius)
        painter.setPen(self.ink)
        font = QFont(painter.font())
        font.setBold(True)
        inner = self._rect.adjusted(PAD, 0, -PAD, 0)
        if mode == "title":
            # scaled up in the scene so it stays legible on screen, but never taller than the box
            px = min(max(TEXT_PX, MIN_TEXT_PX / lod), self._rect.height() * 0.7)
            font.setPixelSize(max(1, round(px)))
            painter.setFont(font)
            text = QFontMetricsF(font).elidedText(
                self.title, Qt.TextElideMode.ElideRight, inner.width()
            )
            painter.drawText(inner, Qt.AlignmentFlag.AlignCenter, text)
            return
        font.setPixelSize(round(TEXT_PX))
        painter.setFont(font)
        half = self._rect.height() / 2
        top = QRectF(inner.left(), self._rect.top() + 2, inner.width(), half - 1)
        bottom = QRectF(inner.left(), self._rect.center().y() - 1, inner.width(), half - 1)
        fm = QFontMetricsF(font)
        painter.drawText(
            top, Qt.AlignmentFlag.AlignCenter,
            fm.elidedText(self.title, Qt.TextElideMode.ElideRight, inner.width()),
        )  # fmt: skip
        font.setBold(False)
        font.setPixelSize(round(TEXT_PX * 0.92))
        painter.setFont(font)
        # middle elision keeps both ends of a long scoped name ("/model/…/conv2/Conv")
        name = QFontMetricsF(font).elidedText(
            self.subtitle, Qt.TextElideMode.ElideMiddle, inner.width()
        )
        painter.drawText(bottom, Qt.AlignmentFlag.AlignCenter, name)
