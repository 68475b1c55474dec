"""The colour key of the graph view: the SQNR scale (the model's own range of the chosen
error) and the float swatch, in one row."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize
from PySide6.QtGui import QLinearGradient, QPainter, QPaintEvent, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from bitlens.gui import colors

_BAR_W = 90
_SWATCH = 12


class GraphLegend(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("graphLegend")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.scale = colors.DEFAULT_SCALE
        self.float_words = ""  # what the last paint wrote next to the float swatch
        self.setToolTip(
            "Layer colour: its SQNR on this model's range of the chosen error (worst "
            "orange-red, best pale yellow); pale blue: kept in float or not evaluated yet.\n"
            "Other nodes are tinted by op family: violet activations, teal normalizations, "
            "green pooling and reductions, grey shape and data movement."
        )

    def set_scale(self, scale: colors.ErrorScale) -> None:
        if scale != self.scale:
            self.scale = scale
            self.updateGeometry()
            self.update()

    def _texts(self) -> tuple[str, str, str]:
        return f"≤{self.scale.lo:.0f} dB", f"≥{self.scale.hi:.0f} dB", "float / no result"

    def sizeHint(self) -> QSize:
        fm = self.fontMetrics()
        lo, hi, flt = self._texts()
        w = sum(fm.horizontalAdvance(t) for t in (lo, hi, flt)) + _BAR_W + _SWATCH + 40
        return QSize(w, fm.height() + 6)

    def minimumSizeHint(self) -> QSize:
        # narrower than the full key: the float swatch's words are dropped to fit
        fm = self.fontMetrics()
        lo, hi, _flt = self._texts()
        # the gaps paintEvent leaves: 2 + 4 around the bar, 4 + 14 before the swatch, 4 after
        w = sum(fm.horizontalAdvance(t) for t in (lo, hi)) + _BAR_W // 2 + _SWATCH + 28
        return QSize(w, fm.height() + 6)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        pal = self.palette()
        fm = self.fontMetrics()
        lo, hi, flt = self._texts()
        text = pal.color(QPalette.ColorRole.WindowText)
        h = self.height()
        base = (h + fm.ascent() - fm.descent()) // 2
        x = 2
        p.setPen(text)
        p.drawText(x, base, lo)
        x += fm.horizontalAdvance(lo) + 4
        full = self.sizeHint().width() <= self.width()
        bar_w = _BAR_W if full else _BAR_W // 2
        grad = QLinearGradient(x, 0, x + bar_w, 0)
        for i in range(11):
            t = i / 10
            grad.setColorAt(t, colors.scale_color(t))
        p.fillRect(QRectF(x, (h - _SWATCH) / 2, bar_w, _SWATCH), grad)
        x += bar_w + 4
        p.drawText(x, base, hi)
        x += fm.horizontalAdvance(hi) + 14
        p.setPen(QPen(pal.color(QPalette.ColorRole.Mid)))
        p.setBrush(colors.float_layer_color(pal))
        p.drawRect(QRectF(x, (h - _SWATCH) / 2, _SWATCH, _SWATCH))
        x += _SWATCH + 4
        p.setPen(text)
        self.float_words = self._fitting(flt, self.width() - x)
        p.drawText(x, base, self.float_words)
        p.end()

    def _fitting(self, words: str, room: int) -> str:
        """The float swatch's words as far as they fit in ``room`` px: all, else the first
        ("float"; at 1280x720 the swatch stood alone), else none (the tooltip says them)."""
        fm = self.fontMetrics()
        for text in (words, words.split(" / ")[0]):
            if fm.horizontalAdvance(text) <= room:
                return text
        return ""
