"""A plot axis whose tick labels never run into each other on a narrow plot.

pyqtgraph always labels its first tick level, however long the labels
(https://github.com/pyqtgraph/pyqtgraph/blob/master/pyqtgraph/graphicsItems/AxisItem.py,
generateDrawSpecs: "always draw top level"): the layer detail's histogram of a power
spectrum (openWakeWord's mel front end, up to 1e12) printed "02e+114e+116e+118e+11" in
its 185 pixels, and the count axis of a 70-pixel-high plot stacked "8000" on "6000" on
"4000". This axis keeps every k-th label of that level, k = 1, 2, 5, 10... until
each has its width and a gap between it and the next.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QFontMetrics

GAP_PX = 8  # the least room between two labels
STEPS = (1, 2, 5, 10, 20, 50)


class CompactAxis(pg.AxisItem):
    def __init__(self, orientation: str, **kwargs: object) -> None:
        super().__init__(orientation, **kwargs)
        self._text_levels = self.style["maxTextLevel"]  # pyqtgraph's default, restored

    def label_width(self, values: list[float], spacing: float) -> int:
        """The widest of the labels these ticks get (their height on a vertical axis), in
        pixels: the room each takes along the axis."""
        metrics = QFontMetrics(self.style.get("tickFont") or self.font())
        if self.orientation in ("left", "right"):
            return metrics.height() if values else 0
        texts = self.tickStrings(values, self.scale, spacing)
        return max((metrics.horizontalAdvance(t) for t in texts), default=0)

    def tickValues(self, minVal: float, maxVal: float, size: float) -> list:
        levels = super().tickValues(minVal, maxVal, size)
        self.style["maxTextLevel"] = self._text_levels
        if not levels or maxVal <= minVal:
            return levels
        spacing, values = levels[0]
        values = list(values)
        for step in STEPS:
            kept, gap = values[::step], spacing * step
            if len(kept) < 2:  # the first and the last label, at least
                kept, gap = values[:: max(1, len(values) - 1)], values[-1] - values[0]
            room = gap / (maxVal - minVal) * size  # pixels from label to label
            if len(kept) <= 2 or self.label_width(kept, gap) + GAP_PX <= room:
                break
        if len(kept) == len(values):
            return levels
        # the finer levels' labels would fill the gaps again: their ticks stay, unlabelled
        self.style["maxTextLevel"] = 0
        return [(gap, kept), (spacing, [v for v in values if v not in kept])]
