"""The colour key of the graph view: the SQNR scale and the float swatch."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QWidget

from bitlens.gui import colors

_BAR_W = 140
_BAR_H = 10


class GraphLegend(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("graphLegend")
        self.metric_text = "accumulated SQNR"
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)

    def set_metric(self, text: str) -> None:
        self.metric_text = text
        self.update()

    def sizeHint(self) -> QSize:
        fm = self.fontMetrics()
        return QSize(_BAR_W + 20, 3 * fm.height() + _BAR_H + 18)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        bg = QColor(pal.color(QPalette.ColorRole.Base))
        bg.setAlpha(225)
        p.setPen(QPen(pal.color(QPalette.ColorRole.Mid)))
        p.setBrush(bg)
        p.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 5, 5)
        fm = self.fontMetrics()
        x, y = 10, 6
        p.setPen(pal.color(QPalette.ColorRole.Text))
        p.drawText(x, y + fm.ascent(), self.metric_text)
        y += fm.height() + 3
        grad = QLinearGradient(x, 0, x + _BAR_W, 0)
        for i in range(11):
            t = i / 10
            db = colors.BAD_DB + t * (colors.GOOD_DB - colors.BAD_DB)
            c = colors.error_color(db)
            assert c is not None
            grad.setColorAt(t, c)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(grad)
        p.drawRect(x, y, _BAR_W, _BAR_H)
        y += _BAR_H + 2
        p.setPen(pal.color(QPalette.ColorRole.Text))
        p.drawText(x, y + fm.ascent(), f"≤{colors.BAD_DB:g} dB")
        right = f"≥{colors.GOOD_DB:g} dB"
        p.drawText(x + _BAR_W - fm.horizontalAdvance(right), y + fm.ascent(), right)
        y += fm.height() + 3
        p.setPen(QPen(pal.color(QPalette.ColorRole.Mid)))
        p.setBrush(colors.float_layer_color(pal))
        p.drawRect(x, y + 2, 14, fm.height() - 4)
        p.setPen(pal.color(QPalette.ColorRole.Text))
        p.drawText(x + 20, y + fm.ascent(), "float / not evaluated")
        p.end()
