"""OCP Microscaling (MX) formats: blocks of 32 elements sharing one power-of-two scale.

OCP Microscaling Formats (MX) v1.0, section 5 and 6
(https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf):
a block of k = 32 values along the reduction axis stores one 8-bit E8M0 scale
``X`` (a power of two, 2^-127 ... 2^127) and 32 elements ``P_i``; the value is
``X * P_i``. Converting a block (section 6.3): ``X = 2^(floor(log2(amax)) -
emax_elem)``, with ``emax_elem`` the exponent of the element type's largest
normal number, then ``P_i = cast(V_i / X)`` rounding to nearest even and
saturating at the element's largest magnitude.

Elements: FP8 E4M3 / E5M2 (MXFP8), FP6 E3M2 / E2M3 (MXFP6), FP4 E2M1 (MXFP4)
through ml_dtypes' casts, and INT8 (MXINT8: two's complement with an implied
scale of 2^-6, kept symmetric in -127 ... 127).

Exported exactly: fp8 and int8 elements as native tensors (Cast), fp6 and fp4
elements as packed codes looked up in their 64/16-entry value table (ONNX
Runtime has no CPU kernel for FLOAT4E2M1 Cast or DequantizeLinear, measured
with 1.31.1, and no float6 type before opset 28); the E8M0 scale as its uint8
exponent, decoded by ``Pow(2, e - 127)`` (exact for every exponent, checked
by tests/core/test_formats_mx.py). Native DequantizeLinear is not used: it
takes float32 scales, four bytes a block where MX stores one.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

from bitlens.core.formats.family import Encoded, FoldContext, FormatFamily, Range
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.qtensor import QTensor
from bitlens.core.formats.spec import Format, Granularity, RangeMethod

MX_BLOCK = 32
SCALE_BITS = 8  # E8M0
E8M0_BIAS = 127
INT8_UNIT = np.float32(2.0**-6)  # MXINT8's implied element scale


@dataclass(frozen=True)
class Element:
    """An element type: its bits, ml_dtypes type (None for int8) and largest normal exponent."""

    name: str
    bits: int
    dtype: np.dtype | None
    emax: int

    @property
    def max(self) -> float:
        if self.dtype is None:
            return 127 * float(INT8_UNIT)
        return float(ml_dtypes.finfo(self.dtype).max)

    def table(self) -> np.ndarray:
        """The float32 value of every code (raw bit pattern 0 ... 2^bits - 1)."""
        if self.dtype is None:
            codes = np.arange(256, dtype=np.uint8).view(np.int8)
            return codes.astype(np.float32) * INT8_UNIT
        return np.arange(2**self.bits, dtype=np.uint8).view(self.dtype).astype(np.float32)

    def cast(self, v: np.ndarray) -> np.ndarray:
        """float32 ``v`` rounded to nearest even on the element grid, saturating."""
        if self.dtype is None:
            return np.clip(np.rint(v / INT8_UNIT), -127, 127).astype(np.int8)
        m = np.float32(self.max)
        return np.clip(v, -m, m).astype(self.dtype)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        if self.dtype is None:
            return codes.astype(np.float32) * INT8_UNIT
        return codes.astype(np.float32)

    def raw(self, codes: np.ndarray) -> np.ndarray:
        """The codes' bit patterns as unsigned integers below 2^bits."""
        return np.ascontiguousarray(codes).view(np.uint8)


def _emax(dtype: type) -> int:
    """Exponent of the largest normal power of two (448 = 1.75 * 2^8 -> 8)."""
    return int(np.frexp(float(ml_dtypes.finfo(dtype).max))[1]) - 1


ELEMENTS = {
    "mxfp8_e4m3": Element("FP8 E4M3", 8, np.dtype(ml_dtypes.float8_e4m3fn),
                          _emax(ml_dtypes.float8_e4m3fn)),
    "mxfp8_e5m2": Element("FP8 E5M2", 8, np.dtype(ml_dtypes.float8_e5m2),
                          _emax(ml_dtypes.float8_e5m2)),
    "mxfp6_e3m2": Element("FP6 E3M2", 6, np.dtype(ml_dtypes.float6_e3m2fn),
                          _emax(ml_dtypes.float6_e3m2fn)),
    "mxfp6_e2m3": Element("FP6 E2M3", 6, np.dtype(ml_dtypes.float6_e2m3fn),
                          _emax(ml_dtypes.float6_e2m3fn)),
    "mxfp4": Element("FP4 E2M1", 4, np.dtype(ml_dtypes.float4_e2m1fn),
                     _emax(ml_dtypes.float4_e2m1fn)),
    "mxint8": Element("INT8", 8, None, 0),
}  # fmt: skip


def shared_exponent(amax: np.ndarray, emax: int) -> np.ndarray:
    """The block scale's exponent ``floor(log2(amax)) - emax``, within E8M0's -127 ... 127.

    ``frexp`` gives ``amax = m * 2^e`` with ``m`` in [0.5, 1), so
    ``floor(log2(amax)) = e - 1`` exactly (no rounding of a logarithm). An
    all-zero block gets the smallest scale (its elements are all zero).
    """
    amax = np.asarray(amax, np.float64)
    _, e = np.frexp(amax)
    x = np.where(amax > 0, e.astype(np.int64) - 1 - emax, -E8M0_BIAS)
    return np.clip(x, -E8M0_BIAS, E8M0_BIAS)


def e8m0_codes(scale: np.ndarray) -> np.ndarray:
    """Power-of-two float32 scales as their E8M0 bytes (biased exponents)."""
    return np.asarray(scale, np.float32).astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)


def decode_scale(ctx: FoldContext, codes: np.ndarray, hint: str) -> str:
    """Store E8M0 bytes and rebuild 2^(e - 127) in float32, broadcast against the weight."""
    e = ctx.to_float(ctx.store(codes, "scale", hint, bits=SCALE_BITS, label="uint8 (E8M0)"))
    unbiased = ctx.node("Sub", [e, ctx.const(f"{hint}_bias", np.array(E8M0_BIAS, np.float32))])
    value = ctx.node("Pow", [ctx.const(f"{hint}_two", np.array(2, np.float32)), unbiased])
    return ctx.broadcast(value, hint)


def table_bits(el: Element) -> int:
    """The float32 value table an export stores once per tensor for fp6/fp4 elements."""
    return 0 if el.bits == 8 else 32 * 2**el.bits


def decode_elements(ctx: FoldContext, q: QTensor, el: Element) -> tuple[str, str]:
    """Store the element codes and rebuild their float32 values: (tensor name, scheme)."""
    if el.dtype is not None and el.bits == 8:  # fp8: a native ONNX type, Cast exactly
        return ctx.to_float(ctx.store(q.codes, "codes", "codes")), "native"
    if el.dtype is None:  # int8 with its implied 2^-6
        values = ctx.to_float(ctx.store(q.codes, "codes", "codes"))
        return ctx.node("Mul", [values, ctx.const("unit", np.array(INT8_UNIT))]), "native"
    table = ctx.store(el.table(), "levels", "levels")
    return ctx.node("Gather", [table, ctx.codes(el.raw(q.codes), el.bits)]), "packed"


class MXFamily(FormatFamily):
    """One MX element type (one registered family per element: mxfp8_e4m3, ..., mxint8)."""

    def __init__(self, name: str) -> None:
        self.family = name
        self.element = ELEMENTS[name]
        el = self.element
        self.grid_text = (
            f"{el.name} elements sharing a power-of-two (E8M0) scale per block of {MX_BLOCK} "
            "(OCP MX v1.0)"
        )
        self.weight_choices = (f"{name} blk{MX_BLOCK}",)
        self.examples = (name, f"{name} blk{MX_BLOCK}@0", f"{name} blk{MX_BLOCK}@1")

    # -- names --------------------------------------------------------------------------
    def parse_head(self, head: str) -> dict[str, object] | None:
        if head != self.family:
            return None
        return {"family": self.family, "bits": self.element.bits,
                "granularity": Granularity.BLOCK, "block_size": MX_BLOCK}  # fmt: skip

    def head(self, fmt: Format) -> str:
        return str(self.family)

    def validate(self, fmt: Format) -> str | None:
        if fmt.bits != self.element.bits:
            return f"{self.family} elements have {self.element.bits} bits, not {fmt.bits}"
        if fmt.granularity is not Granularity.BLOCK or fmt.block_size != MX_BLOCK:
            return f"{self.family} shares one scale per block of {MX_BLOCK} (blk{MX_BLOCK})"
        if fmt.range_method is not RangeMethod.MINMAX:
            return f"{self.family} scales each block by its largest magnitude; no range method"
        return None

    # -- numerics -----------------------------------------------------------------------
    def quantize(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, value_range: Range | None, what: str
    ) -> QTensor:
        x32 = np.asarray(x).astype(np.float32, copy=False)
        amax = np.fmax.reduce(np.abs(grouping.groups(x32)), axis=1)  # NaN padding skipped
        exponent = grouping.to_params(shared_exponent(amax, self.element.emax).astype(np.int32))
        scale = np.ldexp(np.float32(1), exponent).astype(np.float32)
        # dividing by a power of two is exact (ldexp), so the cast rounds V_i / X only once
        codes = self.element.cast(np.ldexp(x32, -grouping.expand(exponent)).astype(np.float32))
        return QTensor(fmt, codes, scale=scale)

    def dequantize(self, q: QTensor) -> np.ndarray:
        assert q.scale is not None
        return self.element.decode(q.codes) * q.grouping.expand(q.scale).astype(np.float32)

    def storage_bits(self, fmt: Format, g: Grouping) -> int:
        return fmt.bits * g.numel + SCALE_BITS * g.n_groups + table_bits(self.element)

    # -- engine and export --------------------------------------------------------------
    def activation_kind(self, fmt: Format, dynamic: bool) -> str | None:
        return None  # weights only

    def native_qdq_dtype(self, fmt: Format, allow_int2: bool) -> np.dtype | None:
        return None  # DequantizeLinear takes float32 scales; see the module docstring

    def encode(self, ctx: FoldContext, q: QTensor) -> Encoded:
        values, scheme = decode_elements(ctx, q, self.element)
        out = ctx.node("Mul", [values, decode_scale(ctx, e8m0_codes(q.scale), "scale")])
        bits = "" if scheme == "native" else f"{self.element.bits}-bit packed "
        text = f"{bits}{self.element.name} codes, E8M0 scale {ctx.granularity_text}"
        return Encoded(out, scheme, text, self.export_min_opset(q.fmt, False))

    def export_min_opset(self, fmt: Format, native_qdq: bool) -> int:
        return 19 if self.element.dtype is not None and self.element.bits == 8 else 13

    # -- views and help -----------------------------------------------------------------
    def grid(self, q: QTensor) -> tuple[np.ndarray, tuple[float, float] | None]:
        assert q.scale is not None
        s = np.float32(np.ravel(q.scale)[0])
        table = self.element.table()
        levels = np.unique(table[np.isfinite(table)] * s)
        m = float(np.float32(self.element.max) * s)
        return levels, (-m, m)

    def group_grid(
        self, x: np.ndarray, fmt: Format, group: int, values: np.ndarray, value_range: Range | None
    ) -> QTensor:
        from bitlens.core.formats.codec import quantize

        # one block's scale depends on its own values only: quantize the block alone
        return quantize(values, fmt.replace(axis=0), what="tensor")

    def levels(self, fmt: Format) -> int | None:
        table = self.element.table()
        return int(np.unique(table[np.isfinite(table)]).size)

    def grid_description(self, fmt: Format) -> str:
        return (
            f"{self.grid_text}: scale = 2^(floor(log2 max|x|) − {self.element.emax}), elements "
            "rounded to nearest even, saturating"
        )

    def stores(self, fmt: Format) -> str:
        text = f"an 8-bit E8M0 power-of-two scale per block of {MX_BLOCK} values"
        if table_bits(self.element):
            text += f"; the {2**self.element.bits}-entry element value table once"
        return text

    def reference(self) -> list[tuple[str, str]]:
        return [(str(self.family), self.grid_text)]


FAMILIES = tuple(MXFamily(name) for name in ELEMENTS)
