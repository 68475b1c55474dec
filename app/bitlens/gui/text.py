"""How numbers read in the window: bytes, decibels, shapes, parameter counts.

Formatting only (no arithmetic on results beyond unit scaling), shared so
the table, status bar and tooltips spell the same value the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bitlens.core.formats import Family, Granularity, parse_format
from bitlens.core.units import format_bytes, format_count

FLOAT_LABEL = "keep float"
DYNAMIC_SUFFIX = " (dynamic)"  # an activation format whose range comes from each input


def with_dynamic(names: Sequence[str]) -> list[str]:
    """Activation format names, then the dynamic variant of each that can be dynamic
    (integer, per tensor: what ONNX Runtime's DynamicQuantizeLinear computes)."""
    out = list(names)
    for name in names:
        f = parse_format(name)
        if f.family is Family.INT and f.granularity is Granularity.TENSOR:
            out.append(name + DYNAMIC_SUFFIX)
    return out


def split_dynamic(text: str) -> tuple[str, bool]:
    """A shown activation name as (format name, dynamic)."""
    if text.endswith(DYNAMIC_SUFFIX):
        return text.removesuffix(DYNAMIC_SUFFIX), True
    return text, False
NONE = "—"


def fmt_bytes(n: int | float | None) -> str:
    """Binary units (KiB = 1024 B), as the CLI writes them."""
    return NONE if n is None else format_bytes(n)


def fmt_count(n: int | None) -> str:
    return NONE if n is None else format_count(n)


def fmt_db(x: float | None) -> str:
    """SQNR in dB; an exact match (infinite SQNR) reads "exact"."""
    if x is None or math.isnan(x):
        return NONE
    if math.isinf(x):
        return "exact" if x > 0 else "−∞ dB"
    return f"{x:.1f} dB"


def fmt_float(x: float | None, digits: int = 4) -> str:
    if x is None or math.isnan(x):
        return NONE
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    return f"{x:.2e}"


def fmt_percent(x: float | None) -> str:
    return NONE if x is None else f"{100.0 * x:.1f} %"


def fmt_shape(shape: Sequence[int | str | None] | None) -> str:
    if shape is None:
        return "?"
    return "×".join("?" if d is None else str(d) for d in shape) or "scalar"


def fmt_format(name: str | None) -> str:
    return FLOAT_LABEL if name is None else name


def fmt_ratio(x: float | None) -> str:
    if x is None or math.isnan(x):
        return NONE
    return "∞×" if math.isinf(x) else f"{x:.2f}×"


def elide(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(n - 1, 1)] + "…"
