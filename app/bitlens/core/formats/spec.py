"""Numeric formats as typed, validated values, and their names.

A :class:`Format` says *how* a tensor is stored: family, bit width, signed
or not, symmetric or affine, granularity and how its range is chosen. It
holds no data; quantizing is done by :mod:`bitlens.core.formats.codec`.

Names are the one human-readable spelling used everywhere (CLI, plans,
the window), and parse back to the same value::

    fp16  bf16  fp8e4m3fn  fp8e5m2 ch0
    int8 sym  int8 sym narrow ch0  uint8 asym  int4 sym blk32@1  int3 asym mse
    tern ch0  bin  nf4 blk64  km4 ch  log4

``ch`` and ``blk32`` without an axis mean "the layer's natural axis"
(output channels for ``ch``, the reduction axis for blocks); binding a
format to a layer resolves it with :meth:`Format.with_axis`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import lru_cache

from bitlens.core.errors import FormatError


class Family(StrEnum):
    FLOAT = "float"  # IEEE / ML floats: fp64 ... fp8
    INT = "int"  # uniform integer grid with scale and zero point
    TERNARY = "ternary"  # {-a, 0, +a}
    BINARY = "binary"  # {-a, +a}
    NF = "nf"  # normal-float quantile lookup table (NF4-style)
    KMEANS = "kmeans"  # k-means codebook of 2^n entries
    LOG2 = "log2"  # signed powers of two


class Granularity(StrEnum):
    TENSOR = "tensor"
    CHANNEL = "channel"
    BLOCK = "block"


class RangeMethod(StrEnum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"  # clip that minimizes reconstruction error


# name -> storage bits; fp8 kinds carry a scale (see floats.py).
FLOAT_KINDS: dict[str, int] = {
    "fp64": 64,
    "fp32": 32,
    "fp16": 16,
    "bf16": 16,
    "fp8e4m3fn": 8,
    "fp8e5m2": 8,
}

# Families whose values come from a lookup table of levels.
LUT_FAMILIES = frozenset({Family.NF, Family.KMEANS, Family.LOG2})
INT_WIDTHS = frozenset({2, 3, 4, 5, 6, 7, 8, 16})
LUT_WIDTHS = frozenset({2, 3, 4, 5, 6, 7, 8})
DEFAULT_PERCENTILE = 99.9


@dataclass(frozen=True)
class Format:
    """One numeric format. Build with :func:`parse_format` or the presets below."""

    family: Family | str  # a Family member, or the name of a family registered later
    bits: int
    signed: bool = True
    symmetric: bool = True
    narrow: bool = False
    granularity: Granularity = Granularity.TENSOR
    axis: int | None = None  # None: the layer's natural axis, resolved on binding
    block_size: int = 0
    range_method: RangeMethod = RangeMethod.MINMAX
    percentile: float = DEFAULT_PERCENTILE
    float_kind: str = ""  # FLOAT family only: a key of FLOAT_KINDS

    def __post_init__(self) -> None:
        _coerce_enums(self)
        unused_pct = self.range_method is not RangeMethod.PERCENTILE
        if unused_pct and self.percentile != DEFAULT_PERCENTILE:
            # The percentile only matters for the percentile method; normalizing it
            # keeps equal formats equal and their names round-tripping.
            object.__setattr__(self, "percentile", DEFAULT_PERCENTILE)
        _validate(self)

    # -- derived properties -------------------------------------------------
    @property
    def is_float(self) -> bool:
        return self.family is Family.FLOAT

    @property
    def is_lut(self) -> bool:
        return self.family in LUT_FAMILIES

    @property
    def has_scale(self) -> bool:
        """Whether the format stores a scale per group (fp16/bf16/fp32/fp64 do not)."""
        from bitlens.core.formats import registry

        return registry.family_of(self).has_scale(self)

    @property
    def qmin(self) -> int:
        """Smallest integer code of an INT format."""
        if self.family is not Family.INT:
            raise FormatError(f"{self.name} has no integer code range")
        if not self.signed:
            return 0
        return -(2 ** (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def qmax(self) -> int:
        if self.family is not Family.INT:
            raise FormatError(f"{self.name} has no integer code range")
        return 2**self.bits - 1 if not self.signed else 2 ** (self.bits - 1) - 1

    @property
    def name(self) -> str:
        return format_name(self)

    def __str__(self) -> str:
        return self.name

    def with_axis(self, axis: int) -> Format:
        """The same format with its channel/block axis fixed (no-op per tensor)."""
        if self.granularity is Granularity.TENSOR:
            return self
        return _with_axis(self, axis)

    def replace(self, **changes: object) -> Format:
        return replace(self, **changes)  # type: ignore[arg-type]


@lru_cache(maxsize=4096)
def _with_axis(fmt: Format, axis: int) -> Format:
    """Kept per (format, axis): a format is immutable, and building one validates it (an
    evaluation binds every layer's weight formats: 97 of these cost 5-10 ms of CPU per
    re-evaluation of a 46-layer CRNN)."""
    return replace(fmt, axis=axis)


def _coerce_enums(f: Format) -> None:
    """Accept enum values given as strings ("int", "channel"), rejecting unknown ones."""
    from bitlens.core.formats import registry

    family = f.family
    if not isinstance(family, Family):
        if family in {e.value for e in Family}:
            object.__setattr__(f, "family", Family(family))
        elif isinstance(family, str) and family in registry.family_names():
            object.__setattr__(f, "family", str(family))
        else:
            known = ", ".join(registry.family_names())
            raise FormatError(f"invalid format: unknown family {family!r} (known: {known})")
    fields = (("granularity", Granularity), ("range_method", RangeMethod))
    for field, enum in fields:
        value = getattr(f, field)
        if isinstance(value, enum):
            continue
        try:
            object.__setattr__(f, field, enum(value))
        except ValueError:
            known = ", ".join(e.value for e in enum)
            msg = f"invalid format: unknown {field} {value!r} (known: {known})"
            raise FormatError(msg) from None


MAX_BLOCK = 1 << 16  # larger blocks save nothing over per-channel and would pad absurdly
MAX_AXIS = 63  # numpy's limit on dimensions


def _validate(f: Format) -> None:
    def bad(msg: str) -> FormatError:
        return FormatError(f"invalid format: {msg}")

    from bitlens.core.formats import registry  # the families import this module

    if (problem := registry.family_of(f).validate(f)) is not None:
        raise bad(problem)
    if f.float_kind and f.family is not Family.FLOAT:
        raise bad("float_kind is only for the float family")
    if f.narrow and not (f.family is Family.INT and f.signed and f.symmetric):
        raise bad("narrow range applies to signed symmetric integers only")
    if f.family is not Family.INT and not f.symmetric:
        raise bad(f"{f.family} formats are symmetric about zero")
    if f.granularity is Granularity.BLOCK:
        if f.block_size < 2:
            raise bad("block granularity needs a block size of at least 2")
        if f.block_size > MAX_BLOCK:
            raise bad(f"block size {f.block_size} is over {MAX_BLOCK}")
    elif f.block_size:
        raise bad("block size given without block granularity")
    if f.axis is not None and f.axis < 0:
        raise bad("axis must be non-negative")
    if f.axis is not None and f.axis > MAX_AXIS:
        raise bad(f"axis {f.axis} is over {MAX_AXIS}")
    if f.granularity is Granularity.TENSOR and f.axis is not None:
        raise bad("a per-tensor format has no axis")
    if not 50.0 <= f.percentile <= 100.0:
        raise bad(f"percentile {f.percentile} outside [50, 100]")


@lru_cache(maxsize=4096)
def format_name(f: Format) -> str:
    """Kept per format (frozen): an evaluation asks for about 450 names on a 46-layer CRNN
    (result rows, cache keys); 1.3 us each to build, 0.35 us kept."""
    from bitlens.core.formats import registry

    parts: list[str] = [registry.family_of(f).head(f)]
    axis = "" if f.axis is None else str(f.axis)
    if f.granularity is Granularity.CHANNEL:
        parts.append(f"ch{axis}")
    elif f.granularity is Granularity.BLOCK:
        parts.append(f"blk{f.block_size}" + (f"@{axis}" if axis else ""))
    if f.range_method is RangeMethod.MSE:
        parts.append("mse")
    elif f.range_method is RangeMethod.PERCENTILE:
        parts.append(f"p{_percentile_text(f.percentile)}")
    return " ".join(parts)


def _percentile_text(p: float) -> str:
    """Digits that parse back to ``p`` exactly ("99.9"; ":g" would print 99.99999 as "100")."""
    short = f"{p:.15g}"
    return short if float(short) == p else repr(float(p))


# Digit runs are bounded so int() never meets a 5000-digit number (a ValueError of its own).
_CH = re.compile(r"^ch(\d{0,12})$")
_BLK = re.compile(r"^blk(\d{1,12})(?:@(\d{1,12}))?$")
_PCT = re.compile(r"^p(\d+(?:\.\d+)?)$")


def parse_format(text: str | Format) -> Format:
    """Parse a format name (see module docstring); raises FormatError naming the bad token."""
    if isinstance(text, Format):
        return text
    tokens = str(text).strip().lower().split()
    if not tokens:
        raise FormatError("empty format name")
    from bitlens.core.formats import registry

    head, rest = tokens[0], tokens[1:]
    found = registry.parse_head(head)
    if found is None:
        raise FormatError(f"unknown format {text!r}: {head!r} is not a format family")
    kw: dict[str, object] = dict(found)
    for tok in rest:
        if tok in ("sym", "asym"):
            kw["symmetric"] = tok == "sym"
        elif tok == "narrow":
            kw["narrow"] = True
        elif tok == "mse":
            kw["range_method"] = RangeMethod.MSE
        elif tok == "minmax":
            kw["range_method"] = RangeMethod.MINMAX
        elif m := _CH.match(tok):
            kw["granularity"] = Granularity.CHANNEL
            kw["axis"] = int(m.group(1)) if m.group(1) else None
        elif m := _BLK.match(tok):
            kw["granularity"] = Granularity.BLOCK
            kw["block_size"] = int(m.group(1))
            kw["axis"] = int(m.group(2)) if m.group(2) else None
        elif m := _PCT.match(tok):
            kw["range_method"] = RangeMethod.PERCENTILE
            kw["percentile"] = float(m.group(1))
        else:
            raise FormatError(f"unknown format {text!r}: token {tok!r} not understood")
    try:
        return Format(**kw)  # type: ignore[arg-type]
    except FormatError as exc:
        raise FormatError(f"{text!r}: {exc}") from None


# The ladder `bitlens inspect` shows for every layer, highest precision first.
INSPECT_LADDER: tuple[str, ...] = (
    "fp16", "int8 sym ch", "int4 sym ch", "int2 sym ch", "tern ch", "bin ch",
)
# The weight formats a sensitivity sweep tries by default, in `bitlens sweep` and in the
# window's sweep dialog alike (one definition: the window had ternary too, the CLI not):
# the integer ladder a mixed plan picks from; every extra format costs a run per layer.
SWEEP_LADDER: tuple[str, ...] = ("int8 sym ch", "int4 sym ch", "int2 sym ch", "bin ch")
