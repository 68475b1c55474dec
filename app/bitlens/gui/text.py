"""How numbers read in the window: bytes, decibels, shapes, parameter counts.

Formatting only (no arithmetic on results beyond unit scaling), shared so
the table, status bar and tooltips spell the same value the same way.
"""

from __future__ import annotations

import math
import re
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
# Dimension names no one chose: ONNX's shape inference names a size it cannot tell
# "unk__N" (github.com/onnx/onnx, onnx/shape_inference/implementation.cc:
# MaterializeSymbolicShape, symbol_table.createNew("unk__")), and
# tf2onnx does the same for a Keras model's batch. Shown as "?", their names in tooltips.
INVENTED_DIM = re.compile(r"unk__\d+")


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
    return "×".join(fmt_dim(d) for d in shape) or "scalar"


def fmt_dim(d: int | str | None) -> str:
    """A size, a dynamic size's name, or "?" where it has none (or an invented one)."""
    return "?" if d is None or is_invented_dim(d) else str(d)


def is_invented_dim(d: int | str | None) -> bool:
    return isinstance(d, str) and INVENTED_DIM.fullmatch(d) is not None


def shape_note(shape: Sequence[int | str | None] | None) -> str:
    """For a tooltip: what the "?" of :func:`fmt_shape` stand for ("" when none does)."""
    if shape is None:
        return "? : the shape is unknown until the model runs"
    names = list(dict.fromkeys(d for d in shape if is_invented_dim(d)))
    unnamed = any(d is None for d in shape)
    if not (names or unnamed):
        return ""
    named = f" (the file or ONNX's shape inference calls it {', '.join(names)})" if names else ""
    return f"? : a size known only when the model runs{named}"


def fmt_format(name: str | None) -> str:
    return FLOAT_LABEL if name is None else name


def fmt_ratio(x: float | None) -> str:
    if x is None or math.isnan(x):
        return NONE
    return "∞×" if math.isinf(x) else f"{x:.2f}×"


def elide(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(n - 1, 1)] + "…"
