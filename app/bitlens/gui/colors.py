"""Colours that carry meaning: error level, before/after, selection.

Error colours follow ColorBrewer's YlOrRd sequential scheme, which is
colour-blind safe because it varies in lightness, not just hue
(https://colorbrewer2.org/#type=sequential&scheme=YlOrRd&n=6): pale yellow
for the best SQNR on the scale, deep orange-red for the worst. The scale
spans the open model's own range of the chosen error (``ErrorScale``), so
"worst" means worst in this model, and the legend says the numbers; with
nothing evaluated it spans ``BAD_DB`` to ``GOOD_DB``. The colours stay light
enough that black text on them is readable in light and dark palettes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QTableWidgetItem

GOOD_DB = 40.0
BAD_DB = 5.0
INK = QColor(20, 20, 20)  # text on error colours
BEFORE = QColor(150, 150, 160)  # bars for float sizes
AFTER = QColor(52, 120, 200)  # bars for quantized sizes
HIGHLIGHT = QColor(255, 140, 0)  # the selected layer in plots and the graph


MIN_SPAN_DB = 10.0  # a scale never spans less: near-equal layers keep near-equal colours
# YlOrRd, worst to best (ColorBrewer, 6 classes, the darkest two dropped for black text)
_STOPS = tuple(
    QColor(c) for c in ("#fc4e2a", "#fd8d3c", "#feb24c", "#fed976", "#ffeda0", "#ffffcc")
)


@dataclass(frozen=True)
class ErrorScale:
    """SQNR at the worst (``lo``) and best (``hi``) end of the colour scale."""

    lo: float
    hi: float

    @classmethod
    def spanning(cls, values: Iterable[float]) -> ErrorScale:
        """The range of the finite ``values`` (at least ``MIN_SPAN_DB`` wide)."""
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return DEFAULT_SCALE
        lo, hi = min(finite), max(finite)
        if hi - lo < MIN_SPAN_DB:
            mid = (lo + hi) / 2
            lo, hi = mid - MIN_SPAN_DB / 2, mid + MIN_SPAN_DB / 2
        return cls(lo, hi)


DEFAULT_SCALE = ErrorScale(BAD_DB, GOOD_DB)


def error_color(sqnr_db: float | None, scale: ErrorScale = DEFAULT_SCALE) -> QColor | None:
    """Colour of an SQNR on ``scale``; None when there is nothing to show."""
    if sqnr_db is None or math.isnan(sqnr_db):
        return None
    if math.isinf(sqnr_db):
        t = 1.0 if sqnr_db > 0 else 0.0
    else:
        t = min(max((sqnr_db - scale.lo) / (scale.hi - scale.lo), 0.0), 1.0)
    return scale_color(t)


def paint_error(item: QTableWidgetItem, sqnr_db: float | None) -> None:
    """Colour a table cell by its SQNR on the default scale, with dark ink for contrast
    on the light end of the scale; a cell with nothing to show keeps its look."""
    c = error_color(sqnr_db)
    if c is not None:
        item.setBackground(c)
        item.setForeground(INK)


def scale_color(t: float) -> QColor:
    """The colour at ``t`` in [0, 1] along the scale (0 worst, 1 best)."""
    x = min(max(t, 0.0), 1.0) * (len(_STOPS) - 1)
    i = min(int(x), len(_STOPS) - 2)
    return mix(_STOPS[i], _STOPS[i + 1], x - i)


def float_layer_color(palette: QPalette) -> QColor:
    """Fill of a quantizable layer kept in float: a tint of the palette's base."""
    base = palette.color(QPalette.ColorRole.Base)
    tint = QColor(120, 150, 210)
    return mix(base, tint, 0.35)


def plain_node_color(palette: QPalette) -> QColor:
    return palette.color(QPalette.ColorRole.Button)


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightnessF() < 0.5


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """``a`` moved a share ``t`` towards ``b``."""
    return QColor(
        round(a.red() * (1 - t) + b.red() * t),
        round(a.green() * (1 - t) + b.green() * t),
        round(a.blue() * (1 - t) + b.blue() * t),
    )
