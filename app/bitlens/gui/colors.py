"""Colours that carry meaning: error level, before/after, selection.

Error colours run from red (SQNR at or below ``BAD_DB``) through yellow to
green (at or above ``GOOD_DB``). They are light enough that black text on
them stays readable in both light and dark palettes, so views draw text
on them in black rather than the palette's text colour.
"""

from __future__ import annotations

import math

from PySide6.QtGui import QColor, QPalette

GOOD_DB = 40.0
BAD_DB = 5.0
INK = QColor(20, 20, 20)  # text on error colours
BEFORE = QColor(150, 150, 160)  # bars for float sizes
AFTER = QColor(52, 120, 200)  # bars for quantized sizes
HIGHLIGHT = QColor(255, 140, 0)  # the selected layer in plots and the graph


def error_color(sqnr_db: float | None) -> QColor | None:
    """Colour of an SQNR; None when there is nothing to show."""
    if sqnr_db is None or math.isnan(sqnr_db):
        return None
    if math.isinf(sqnr_db):
        t = 1.0 if sqnr_db > 0 else 0.0
    else:
        t = min(max((sqnr_db - BAD_DB) / (GOOD_DB - BAD_DB), 0.0), 1.0)
    return QColor.fromHsvF(t * 120.0 / 360.0, 0.55, 0.95)


def float_layer_color(palette: QPalette) -> QColor:
    """Fill of a quantizable layer kept in float: a tint of the palette's base."""
    base = palette.color(QPalette.ColorRole.Base)
    tint = QColor(120, 150, 210)
    return _mix(base, tint, 0.35)


def plain_node_color(palette: QPalette) -> QColor:
    return palette.color(QPalette.ColorRole.Button)


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightnessF() < 0.5


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    return QColor(
        round(a.red() * (1 - t) + b.red() * t),
        round(a.green() * (1 - t) + b.green() * t),
        round(a.blue() * (1 - t) + b.blue() * t),
    )
