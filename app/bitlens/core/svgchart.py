"""A small SVG bar-chart writer (no Qt, no matplotlib) for the HTML report.

One chart is one or two series of bars over the model's layers in
topological order, the same layout as the window's "Error and size per
layer" plots: grouped bars per layer, a labelled y axis with a few round
ticks, layer names in each bar's tooltip (``<title>``), a legend above the
plot area. Values that are missing (NaN) draw no bar; values drawn at a cap
(an exact result's infinite SQNR) are hatched by a lighter fill and say so
in their tooltip. The output is plain SVG 1.1 text to inline in HTML.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family='DejaVu Sans, Arial, sans-serif' font-size='11'"
# Okabe & Ito's colour-blind-safe palette (https://jfly.uni-koeln.de/color/): blue for the
# current plan, grey for the reference (float, or plan A), as the window draws sizes.
BLUE = "#0072b2"
GREY = "#9a9ca4"
PURPLE = "#cc79a7"  # plan A, as in the window's plots
MIN_WIDTH = 560


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float]  # one per layer; NaN = no bar
    color: str
    capped: Sequence[bool] = ()  # per layer: drawn at a cap (e.g. an exact, infinite SQNR)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _fmt_tick(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.0e}"
    return f"{v:g}"


def bar_chart(
    names: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    y_label: str,
    height: int = 220,
    tooltip_unit: str = "",
    tooltip_value: Callable[[float], str] | None = None,
) -> str:
    """An SVG of grouped bars, one group per name, one bar per series; a bar's tooltip
    gives its value with ``tooltip_unit``, or as ``tooltip_value`` writes it."""
    n = len(names)
    left, right, top, bottom = 64, 12, 34, 28
    slots = max(n, 1)
    # readable at any layer count: at least 6 px per layer, and never narrower than the title
    width = int(max(MIN_WIDTH, left + right + slots * max(6.0, min(28.0, 900.0 / slots))))
    group_w = (width - left - right) / slots
    plot_h = height - top - bottom
    finite = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    lo = min([0.0, *finite])
    hi = max([0.0, *finite]) or 1.0
    ticks = nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / (hi - lo))

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' role='img' aria-label='{escape(title, True)}' {FONT}>",
        f"<title>{escape(title)}</title>",
        f"<rect x='0' y='0' width='{width}' height='{height}' fill='#ffffff'/>",
        f"<text x='{left}' y='14' font-weight='bold'>{escape(title)}</text>",
    ]
    lx = left + 8 + 7.2 * len(title)  # the legend follows the title on its line
    for s in series:
        out.append(f"<rect x='{lx:.0f}' y='5' width='10' height='10' fill='{s.color}'/>")
        out.append(f"<text x='{lx + 14:.0f}' y='14'>{escape(s.label)}</text>")
        lx += 24 + 7 * len(s.label)
    for t in ticks:
        ty = y(t)
        out.append(f"<line x1='{left}' x2='{width - right}' y1='{ty:.1f}' y2='{ty:.1f}' "
                   "stroke='#dddddd' stroke-width='1'/>")  # fmt: skip
        out.append(f"<text x='{left - 6}' y='{ty + 4:.1f}' text-anchor='end'>{_fmt_tick(t)}</text>")
    out.append(f"<text transform='translate(14 {top + plot_h / 2:.0f}) rotate(-90)' "
               f"text-anchor='middle'>{escape(y_label)}</text>")  # fmt: skip
    k = max(len(series), 1)
    bar_w = group_w * 0.8 / k
    zero = y(0.0) if lo <= 0.0 <= hi else y(lo)
    for i, name in enumerate(names):
        gx = left + i * group_w + group_w * 0.1
        for j, s in enumerate(series):
            v = s.values[i] if i < len(s.values) else math.nan
            if v is None or not math.isfinite(v):
                continue
            capped = i < len(s.capped) and s.capped[i]
            y0, y1 = sorted((zero, y(v)))
            tip = f"{name} · {s.label}: " + ("exact (drawn at the cap)" if capped
                                               else tooltip_value(v) if tooltip_value
                                               else f"{v:.4g}{tooltip_unit}")  # fmt: skip
            opacity = " fill-opacity='0.45'" if capped else ""
            out.append(
                f"<rect x='{gx + j * bar_w:.2f}' y='{y0:.2f}' width='{bar_w:.2f}' "
                f"height='{max(y1 - y0, 0.5):.2f}' fill='{s.color}'{opacity}>"
                f"<title>{escape(tip)}</title></rect>"
            )
    axis_y = top + plot_h
    out.append(f"<line x1='{left}' x2='{width - right}' y1='{axis_y}' y2='{axis_y}' "
               "stroke='#555555'/>")  # fmt: skip
    step = max(1, math.ceil(n / 20))  # at most ~20 index labels
    for i in range(0, n, step):
        cx = left + (i + 0.5) * group_w
        out.append(f"<text x='{cx:.1f}' y='{axis_y + 14}' text-anchor='middle'>{i}</text>")
    out.append(f"<text x='{width - right}' y='{height - 2}' text-anchor='end'>"
               "layer index (topological order)</text>")  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)
