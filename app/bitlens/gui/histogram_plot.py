"""One histogram of the layer detail, its items made once and their data replaced.

The detail's two histograms (weights, input activation) were redrawn by clearing the plot
and adding new items for every detail shown: every stage of a detail as it fills, every
layer selected, every evaluation. Making, adding and removing pyqtgraph items is the larger
part of that drawing on the window's thread (issue 11; docs/benchmarks.md "uiviews
(session 16)"). Here the items (the bars, the format's grid levels, the two clip lines)
are made once per plot, in the order the redraw added them (the same stacking), and a
distribution replaces their data; an item the distribution has no use for is hidden,
which takes it out of the plot's auto-range as the redraw's absent item was
(pyqtgraph's ViewBox.childrenBounds skips hidden items).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from bitlens.core.viewdata import Distribution
from bitlens.gui import colors


class HistogramItems:
    def __init__(self, item: pg.PlotItem):
        self._item = item
        fill = pg.mkBrush(colors.AFTER.red(), colors.AFTER.green(), colors.AFTER.blue(), 150)
        self.bars = pg.PlotDataItem(
            stepMode="center", fillLevel=0, brush=fill, pen=pg.mkPen(colors.AFTER, width=1)
        )
        self.levels = pg.PlotDataItem(connect="pairs", pen=pg.mkPen(colors.HIGHLIGHT, width=1.5))
        dash = pg.mkPen(colors.HIGHLIGHT, width=1.5, style=Qt.PenStyle.DashLine)
        self.clips = [pg.InfiniteLine(angle=90, pen=dash) for _ in range(2)]
        for part in (self.bars, self.levels, *self.clips):
            part.setVisible(False)
            item.addItem(part)

    def clear(self) -> None:
        for part in (self.bars, self.levels, *self.clips):
            part.setVisible(False)

    def show(self, dist: Distribution) -> None:
        """The counts as bars, the format's levels as ticks a quarter of the tallest bar
        high, its clip range as dashed lines and the x range over both."""
        item = self._item
        self.bars.setData(dist.edges, dist.counts)
        self.bars.setVisible(True)
        top = float(dist.counts.max()) if dist.counts.size else 1.0
        if dist.levels.size:
            xs = np.repeat(dist.levels, 2)
            ys = np.tile([0.0, top * 0.25], dist.levels.size)
            self.levels.setData(xs, ys)
        self.levels.setVisible(bool(dist.levels.size))
        for line, v in zip(self.clips, dist.clip or (), strict=False):
            line.setValue(v)
        for line in self.clips:
            line.setVisible(dist.clip is not None)
        if dist.clip is not None:
            lo, hi = dist.clip
            x0 = min(float(dist.edges[0]), lo)
            x1 = max(float(dist.edges[-1]), hi)
            item.setXRange(x0, x1, padding=0.05)
        else:
            item.enableAutoRange()
