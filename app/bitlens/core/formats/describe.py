"""Plain-words descriptions of formats, derived from the format spec itself.

Tooltips in the window and the Help ▸ Format Reference read from here, so
what they say follows the parser and the storage accounting: the bits and
levels come from the :class:`Format` value, the cost from
:func:`storage_bits` on an example tensor, and the reference lists every
family and modifier the parser accepts (a test checks that each enum member
and each name the window offers is described).
"""

from __future__ import annotations

from dataclasses import dataclass

from bitlens.core.formats import lut
from bitlens.core.formats.codec import SCALE_BITS, storage_bits
from bitlens.core.formats.spec import (
    DEFAULT_PERCENTILE,
    FLOAT_KINDS,
    INT_WIDTHS,
    LUT_WIDTHS,
    Family,
    Format,
    Granularity,
    RangeMethod,
    parse_format,
)

# What each family's grid is; every Family member has an entry (checked by a test).
FAMILY_GRID = {
    Family.FLOAT: "a floating-point grid: relative precision, finer near zero",
    Family.INT: "a uniform grid of integer codes times a scale (plus a zero point if affine)",
    Family.TERNARY: "three levels {−a, 0, +a}",
    Family.BINARY: "two levels {−a, +a}",
    Family.NF: "normal-float levels: quantiles of a normal distribution (as NF4), times a scale",
    Family.KMEANS: "a codebook of levels fitted by k-means to the values, stored with them",
    Family.LOG2: "signed powers of two times a scale: fine near zero, coarse at the ends",
}
GRANULARITY_TEXT = {
    Granularity.TENSOR: "one scale for the whole tensor",
    Granularity.CHANNEL: "one scale per channel (a weight's output channels by default)",
    Granularity.BLOCK: "one scale per block of values along the reduction axis",
}
RANGE_TEXT = {
    RangeMethod.MINMAX: "range from the min and max (nothing clipped)",
    RangeMethod.PERCENTILE: "range clipped at a percentile of |x| (outliers saturate)",
    RangeMethod.MSE: "range clipped where the reconstruction error is smallest",
}
# The name's words after the family, as the parser reads them (spec.parse_format).
MODIFIERS = (
    ("sym", "symmetric around zero: no zero point"),
    ("asym", "affine: a zero point shifts the grid to the data's range"),
    ("narrow", "drop the most negative code, so the grid is symmetric (−127…127)"),
    ("ch, ch0, ch1…", "per channel: " + GRANULARITY_TEXT[Granularity.CHANNEL].split(": ")[-1]
     + "; chN names the axis"),
    ("blk32, blk64@1", "per block of N values along the reduction axis (or the axis after @)"),
    ("mse", RANGE_TEXT[RangeMethod.MSE]),
    (f"p{DEFAULT_PERCENTILE:g}", RANGE_TEXT[RangeMethod.PERCENTILE]),
    ("minmax", RANGE_TEXT[RangeMethod.MINMAX] + " (the default)"),
)  # fmt: skip
EXAMPLE_SHAPE = (256, 256)  # the tensor the cost per value is measured on


@dataclass(frozen=True)
class FormatDescription:
    name: str
    bits: int  # bits per stored code
    levels: int | None  # distinct values on the grid (None for fp16 and wider floats)
    grid: str
    scale: str  # what is stored besides the codes
    bits_per_value: float  # storage_bits / values on EXAMPLE_SHAPE, overhead included

    def lines(self) -> list[str]:
        levels = "" if self.levels is None else f", {self.levels} levels"
        return [
            f"{self.name}: {self.bits}-bit codes{levels}",
            f"grid: {self.grid}",
            f"stores: {self.scale}",
            f"costs {self.bits_per_value:.2f} bits per value on a {EXAMPLE_SHAPE[0]}×"
            f"{EXAMPLE_SHAPE[1]} weight ({32 / self.bits_per_value:.1f}× smaller than fp32)",
        ]

    def tooltip(self) -> str:
        return "\n".join(self.lines())


def describe_format(fmt: Format | str) -> FormatDescription:
    """What ``fmt`` stores, its grid, and what it costs per value (overhead included)."""
    f = parse_format(fmt)
    natural = 1 if f.granularity is Granularity.BLOCK else 0  # a Gemm weight's axes
    bound = f if f.axis is not None else f.with_axis(natural)
    n = EXAMPLE_SHAPE[0] * EXAMPLE_SHAPE[1]
    per_value = storage_bits(bound, EXAMPLE_SHAPE) / n
    return FormatDescription(
        name=f.name,
        bits=f.bits,
        levels=_levels(f),
        grid=_grid(f),
        scale=_scale(f),
        bits_per_value=per_value,
    )


def _levels(f: Format) -> int | None:
    if f.family is Family.INT:
        return f.qmax - f.qmin + 1
    if f.family is Family.TERNARY:
        return 3
    if f.family is Family.BINARY:
        return 2
    if f.family in (Family.NF, Family.LOG2):
        return len(lut.fixed_levels(f.family, f.bits))
    if f.family is Family.KMEANS:
        return 2**f.bits
    if f.float_kind.startswith("fp8"):
        return 2**8
    return None


def _grid(f: Format) -> str:
    text = FAMILY_GRID[f.family]
    if f.family is Family.INT:
        text += "; symmetric" if f.symmetric else "; affine (zero point)"
        if f.narrow:
            text += ", narrow"
    if f.family is not Family.KMEANS and (f.family is not Family.FLOAT or f.has_scale):
        text += f"; {RANGE_TEXT[f.range_method]}"
    return text


def _scale(f: Format) -> str:
    if not f.has_scale:
        return "nothing else (a plain cast)"
    if f.granularity is Granularity.BLOCK:
        where = f"one per block of {f.block_size} values"
    else:
        where = GRANULARITY_TEXT[f.granularity].replace("scale", "set")
    parts = [f"float{SCALE_BITS} scale(s): {where}"]
    if f.family is Family.INT and (not f.symmetric or not f.signed):
        parts.append(f"a {f.bits}-bit zero point with each scale")
    if f.family is Family.KMEANS:
        parts.append(f"a codebook of {2**f.bits} float{SCALE_BITS} levels per group")
    if f.family in (Family.NF, Family.LOG2):
        parts.append("the fixed level table once")
    return "; ".join(parts)


def format_reference() -> list[tuple[str, str]]:
    """Every format family and width the parser accepts, then the modifiers: (name, meaning)."""
    rows: list[tuple[str, str]] = []
    for kind, bits in FLOAT_KINDS.items():
        f = parse_format(kind)
        scale = ", with a scale" if f.has_scale else ""
        rows.append((kind, f"{bits}-bit float{scale}: {FAMILY_GRID[Family.FLOAT]}"))
    widths = ", ".join(str(b) for b in sorted(INT_WIDTHS))
    rows.append((f"intN / uintN (N = {widths})", FAMILY_GRID[Family.INT]))
    rows.append(("tern", FAMILY_GRID[Family.TERNARY]))
    rows.append(("bin", FAMILY_GRID[Family.BINARY]))
    lut_widths = ", ".join(str(b) for b in sorted(LUT_WIDTHS))
    for family, prefix in ((Family.NF, "nf"), (Family.KMEANS, "km"), (Family.LOG2, "log")):
        rows.append((f"{prefix}N (N = {lut_widths})", FAMILY_GRID[family]))
    rows.extend(MODIFIERS)
    return rows
