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

from bitlens.core.formats.codec import storage_bits
from bitlens.core.formats.family import GRANULARITY_TEXT, RANGE_TEXT
from bitlens.core.formats.registry import FAMILIES, family_of
from bitlens.core.formats.spec import (
    DEFAULT_PERCENTILE,
    Format,
    Granularity,
    RangeMethod,
    parse_format,
)

# What each family's grid is; every registered family has an entry.
FAMILY_GRID = {fam.family: fam.grid_text for fam in FAMILIES}
__all__ = ["FAMILY_GRID", "GRANULARITY_TEXT", "MODIFIERS", "RANGE_TEXT", "describe_format",
           "format_reference"]  # fmt: skip
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
    family = family_of(f)
    return FormatDescription(
        name=f.name,
        bits=f.bits,
        levels=family.levels(f),
        grid=family.grid_description(f),
        scale=family.stores(f),
        bits_per_value=per_value,
    )


def format_reference() -> list[tuple[str, str]]:
    """Every format family and width the parser accepts, then the modifiers: (name, meaning)."""
    rows = [row for fam in FAMILIES for row in fam.reference()]
    rows.extend(MODIFIERS)
    return rows
