"""The plan search's scatter: every plan tried, the Pareto front, float and the presets.

x is the exported file size, y the relative output error (log scale, lower is
better). Hovering a point shows its plan summary; clicking a plan point asks
to apply it (``pointClicked``). Float has no error, so it is a vertical line at
its size rather than a point.
"""

from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel, QStackedLayout, QWidget

from bitlens.core.search import Point, pareto_front
from bitlens.core.units import byte_scale
from bitlens.gui import colors
from bitlens.gui.text import fmt_bytes

FLOOR = 1e-6  # errors below this (exact plans) are drawn here on the log axis
# the mantissas of the log axis's labelled ticks: pyqtgraph labels all of 1..9 in a decade when
# its fill check (a total over the axis, not per label) passes, and on the panel's short plot
# the labels of 6..9 ran into each other at the top of each decade
LABELLED = (1, 2, 5)
MIN_LABELS = 2  # fewer 1-2-5 labels than this in view: every tick is labelled
# room around the points (of the view's range): a preset's name, written above its point,
# was cut off at the top edge of the short plot
PADDING = 0.08
# In place of the plot until the first plan or preset arrives: an empty plot showed bare
# 0..1 axes and a log axis with no decades, which read as a broken chart.
EMPTY = (
    "No plans yet. Press Find plan: every plan the search tries appears here, its exported "
    "file size across and its output error (relative L2, log scale) up, next to float and "
    "the presets (W8A8, …) for reference."
)
# ... and while a search runs but has no plan yet (on a real model its per-layer
# sensitivities come first, for a minute or more; the step is said below the plot)
WAITING = "Searching: the plans appear here as the search tries them."
# The presets' names, readable on the plot's background in either theme: the light theme's
# brick red on the dark theme's near-black base measured a contrast of 2.9:1, under the 4.5:1
# WCAG asks of text (https://www.w3.org/TR/WCAG21/#contrast-minimum).
PRESET_INK = {False: (180, 60, 30), True: (255, 150, 100)}  # by colors.is_dark


FINE_TICKS = 3  # about this many finer ticks where a narrow range holds fewer than MIN_LABELS


class LogErrorAxis(pg.AxisItem):
    """A log axis labelling the 1-2-5 ticks of each decade; the others keep their grid line."""

    def logTickValues(self, minVal, maxVal, size, stdTicks):
        levels = super().logTickValues(minVal, maxVal, size, stdTicks)
        inside = [v for _spacing, values in levels for v in values if minVal <= v <= maxVal]
        if len(inside) >= MIN_LABELS or not maxVal > minVal:
            return levels
        # open_nsfw's two presets between errors 0.05 and 0.06 (a search stopped before its
        # first plan): the view's one whole-digit tick was 0.05, the axis's only number.
        # Finer ticks, at a 1-2-5 step in the errors themselves, name the range.
        lo, hi = 10.0**minVal, 10.0**maxVal
        step = _nice_step((hi - lo) / FINE_TICKS)
        fine = [
            math.log10(k * step)
            for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)
            if not any(abs(math.log10(k * step) - v) < 1e-9 for v in inside)
        ]
        return [*levels, (None, fine)] if fine else levels

    def logTickStrings(self, values, scale, spacing):
        if not all(_whole(v) for v in values):  # the finer ticks: "%0.1g" read 0.052 as 0.05
            return [f"{10.0**v * scale:.3g}" for v in values]
        out = super().logTickStrings(values, scale, spacing)
        kept = [s if _mantissa(v) in LABELLED else "" for v, s in zip(values, out, strict=True)]
        # within a decade (open_nsfw's W8A8 at 0.056 and W4A8 at 0.095, before the search's
        # first plan) the ticks are 0.06..0.1 and at most one is a 1-2-5: the axis read
        # no number at all. Those few ticks all fit, so all are labelled.
        return kept if sum(1 for k in kept if k) >= MIN_LABELS else out


def _mantissa(log_value: float) -> int:
    return round(10 ** (log_value - math.floor(log_value + 1e-9)))


def _whole(log_value: float) -> bool:
    """Whether ``10 ** log_value`` is a whole digit times a power of ten (0.05, 3e-4)."""
    m = 10 ** (log_value - math.floor(log_value + 1e-9))
    return abs(m - round(m)) < 1e-6


def _nice_step(span: float) -> float:
    """The least 1, 2 or 5 times a power of ten that is at least ``span``."""
    decade = 10.0 ** math.floor(math.log10(span))
    return next(m * decade for m in (1, 2, 5, 10) if m * decade >= span * (1 - 1e-9))


class SearchPlot(QWidget):
    pointClicked = Signal(object)  # Point
    pointHovered = Signal(object)  # Point or None

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.points: list[Point] = []  # search plans, in the order tried
        # ArgMax/ArgMin outputs of the model searched (Measuring.label_outputs): the errors
        # count changed labels there, and no dB figure reads them
        self.label_outputs: tuple[str, ...] = ()
        self.references: list[Point] = []
        self.plot = pg.PlotWidget(self, axisItems={"left": LogErrorAxis("left")})
        self.plot.setObjectName("searchPlot")
        self.plot.setLogMode(x=False, y=True)
        self.plot.getViewBox().setDefaultPadding(PADDING)
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        # binary units, as every other size in the window (pyqtgraph's SI prefix made the
        # float line of a 51.5 MiB model read 54 MB); set by _rescale
        self._divisor, self._unit = 1.0, "B"
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.plot.setLabel("bottom", self._x_label())
        # short: the panel's plot is about 160 px high at 1280x720, and "output error
        # (relative L2)" was cut off at its top
        self.plot.setLabel("left", "error (rel. L2)")
        self.plot.getAxis("left").enableAutoSIPrefix(False)
        self.plot.addLegend(offset=(-10, 10))
        # PlotDataItems (not bare scatter items) so that the log y axis applies to them
        self.tried = pg.PlotDataItem(
            pen=None, symbol="o", symbolSize=6, symbolPen=None,
            symbolBrush=pg.mkBrush(150, 150, 150, 160), name="tried",
        )  # fmt: skip
        self.front = pg.PlotDataItem(
            pen=pg.mkPen((30, 110, 200), width=2), symbol="o", symbolSize=9,
            symbolBrush=(30, 110, 200), name="front",
        )  # fmt: skip
        self.refs = pg.PlotDataItem(
            pen=None, symbol="t", symbolSize=12, symbolPen=pg.mkPen((180, 60, 30)),
            symbolBrush=pg.mkBrush(230, 120, 60), name="presets",
        )  # fmt: skip
        self.float_line = pg.InfiniteLine(
            angle=90, pen=pg.mkPen((90, 90, 90), style=pg.QtCore.Qt.PenStyle.DashLine),
            # near the bottom: the legend holds the top right, where float's line runs
            label="float", labelOpts={"position": 0.08},
        )  # fmt: skip
        self.chosen = pg.PlotDataItem(
            pen=None, symbol="star", symbolSize=18, symbolPen=pg.mkPen("k"),
            symbolBrush=pg.mkBrush(250, 200, 40),
        )  # fmt: skip
        self._labels: list[pg.TextItem] = []  # the presets' names, in their order
        self._chosen: list[Point] = []
        for item in (self.tried, self.front, self.refs, self.chosen):
            self.plot.addItem(item)
        self.plot.addItem(self.float_line)
        self.float_line.hide()
        for item in (self.tried, self.front, self.refs):
            item.sigPointsClicked.connect(self._on_clicked)
            item.sigPointsHovered.connect(self._on_hovered)
        self.placeholder = QLabel(EMPTY, self)
        self.placeholder.setObjectName("searchPlotEmpty")
        self.placeholder.setWordWrap(True)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setMargin(12)
        self._stack = QStackedLayout(self)
        self._stack.setContentsMargins(0, 0, 0, 0)
        self._stack.addWidget(self.placeholder)
        self._stack.addWidget(self.plot)
        self._restyle()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._restyle()

    def _restyle(self) -> None:
        """The theme's colours, as the window's other plots (pyqtgraph draws black
        otherwise, the one dark pane of the light theme)."""
        pal = self.palette()
        fg = pal.color(QPalette.ColorRole.Text)
        self.plot.setBackground(pal.color(QPalette.ColorRole.Base))
        for axis in ("left", "bottom"):
            ax = self.plot.getPlotItem().getAxis(axis)
            ax.setPen(pg.mkPen(fg))
            ax.setTextPen(pg.mkPen(fg))
        legend = self.plot.getPlotItem().legend
        if legend is not None:  # its labels take a colour when their text is set
            legend.setLabelTextColor(fg)
            for _sample, label in legend.items:
                label.setText(label.text, color=fg)
        self.float_line.label.setColor(fg)
        for label in self._labels:
            label.setColor(self._preset_ink())

    def _preset_ink(self) -> tuple[int, int, int]:
        return PRESET_INK[colors.is_dark(self.palette())]

    # -- data ----------------------------------------------------------------------------------
    def clear(self, searching: bool = False) -> None:
        """Forget every point; the placeholder says whether a search is under way."""
        self.points = []
        self.references = []
        for label in self._labels:
            self.plot.removeItem(label)
        self._labels = []
        self._chosen = []
        for item in (self.tried, self.refs, self.chosen, self.front):
            item.setData([], [])
        self.float_line.hide()
        self.placeholder.setText(WAITING if searching else EMPTY)
        self._stack.setCurrentWidget(self.placeholder)

    @property
    def is_empty(self) -> bool:
        """No plan or preset to draw yet (float at most): the placeholder shows, not the axes."""
        return self._stack.currentWidget() is self.placeholder

    def add(self, p: Point) -> None:
        if p.label == "search":
            self.points.append(p)
        else:
            self.references.append(p)
        if p.label not in ("search", "float"):
            text = pg.TextItem(p.label, anchor=(0, 1), color=self._preset_ink())
            self.plot.addItem(text)
            self._labels.append(text)
        self._rescale()
        self._draw()
        if p.label != "float":  # float alone is a line on bare axes (a search stopped early)
            self._stack.setCurrentWidget(self.plot)

    def _rescale(self) -> None:
        largest = max((q.file_bytes for q in (*self.points, *self.references)), default=0)
        scale = byte_scale(float(largest))
        if scale != (self._divisor, self._unit):
            self._divisor, self._unit = scale
            self.plot.setLabel("bottom", self._x_label())

    def _x_label(self) -> str:
        return f"file size by the plan's accounting ({self._unit})"

    def _draw(self) -> None:
        """Every item at the current unit of the x axis."""
        d = self._divisor
        _show(self.tried, self.points, d)
        _show(self.front, list(pareto_front(self.points, self._float)), d)
        refs = [r for r in self.references if r.label != "float"]
        _show(self.refs, refs, d)
        for text, r in zip(self._labels, refs, strict=True):
            text.setPos(r.file_bytes / d, math.log10(_y(r)))
        floats = self._float
        if floats:
            self.float_line.setValue(floats[-1].file_bytes / d)
            self.float_line.show()
        _show(self.chosen, self._chosen, d)

    @property
    def _float(self) -> list[Point]:
        return [r for r in self.references if r.label == "float"]

    def mark(self, p: Point | None) -> None:
        """Star the plan that was applied (or chosen as the best within the budget)."""
        self._chosen = [] if p is None else [p]
        _show(self.chosen, self._chosen, self._divisor)

    @property
    def front_points(self) -> tuple[Point, ...]:
        return pareto_front(self.points, self._float)

    # -- interaction -----------------------------------------------------------------------------
    def _on_clicked(self, _item, spots, *_ev) -> None:
        for spot in spots:
            p = spot.data()
            if isinstance(p, Point):
                self.pointClicked.emit(p)
                return

    def _on_hovered(self, _item, spots, *_ev) -> None:
        p = next((s.data() for s in spots if isinstance(s.data(), Point)), None)
        self.plot.setToolTip("" if p is None else tooltip(p, self.label_outputs))
        self.pointHovered.emit(p)


def tooltip(p: Point, label_outputs: tuple[str, ...] = ()) -> str:
    """A point's size, error and plan. With ArgMax/ArgMin outputs (``label_outputs``) the
    error counts the labels that changed (core/search/measures.py output_error), as
    ``bitlens search`` says (cli/search.py render): a dB figure of it means nothing."""
    metric = "" if p.metric is None else f", metric {p.metric:.4g}"
    kind = (
        f"the fraction of changed labels of {', '.join(label_outputs)}"
        if label_outputs
        else f"{p.sqnr_db:.1f} dB"
    )
    return (
        f"{p.label}: {fmt_bytes(p.file_bytes)}, error {p.error:.4g} ({kind}){metric}\n"
        f"{p.summary()}"
    )


def _y(p: Point) -> float:
    return max(p.error, FLOOR)


def _show(item: pg.PlotDataItem, points: list[Point], divisor: float) -> None:
    item.setData([p.file_bytes / divisor for p in points], [_y(p) for p in points], data=points)
