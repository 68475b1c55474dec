"""A plot's title that fits its plot: each line cut with "…" where the plot is too
narrow, the whole title in the plot's tooltip.

pyqtgraph draws a title as one rich-text item as wide as its text; in a narrow
pane (the layer detail at 1280x720) the ends of a long title ("grid shown:
channel 402 of 512 (widest range)", a layer's activation note) are simply
clipped, with no sign that anything is missing.
"""

from __future__ import annotations

import html

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics

MARGIN = 16  # px the plot item keeps free left and right of its title


class FittedTitle(QObject):
    """The title of ``plot``: lines of (text, point size), re-fitted on every resize."""

    def __init__(self, plot: pg.PlotWidget):
        super().__init__(plot)
        self._plot = plot
        self._lines: list[tuple[str, float]] = []
        self._color = QColor()
        self._tip = ""
        self.shown: list[str] = []  # the lines as drawn, cut or whole
        plot.installEventFilter(self)

    @property
    def elided(self) -> bool:
        return any(
            shown != text for shown, (text, _size) in zip(self.shown, self._lines, strict=True)
        )

    @property
    def text(self) -> str:
        return "\n".join(text for text, _size in self._lines)

    def set(self, lines: list[tuple[str, float]], color: QColor, tip: str = "") -> None:
        """``tip``: the plot's own tooltip, shown under the whole title when that is cut."""
        self._lines, self._color, self._tip = lines, color, tip
        self._apply()

    def _apply(self) -> None:
        width = max(self._plot.width() - 2 * MARGIN, 40)
        self.shown = []
        parts = []
        for text, size in self._lines:
            font = QFont(self._plot.font())
            font.setPointSizeF(size)
            shown = QFontMetrics(font).elidedText(text, Qt.TextElideMode.ElideRight, width)
            self.shown.append(shown)
            parts.append(f"<span style='font-size:{size:g}pt'>{html.escape(shown)}</span>")
        item = self._plot.getPlotItem()
        item.setTitle("<br>".join(parts) if parts else None, color=self._color)
        tip = self._tip
        if self.elided:
            tip = f"{self.text}\n\n{tip}" if tip else self.text
        self._plot.setToolTip(tip)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._plot and event.type() == QEvent.Type.Resize and self._lines:
            self._apply()
        return False
