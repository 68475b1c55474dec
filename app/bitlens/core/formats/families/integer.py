"""Uniform integers (int2 ... int16, signed or not, symmetric or affine); see ``uniform.py``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import ml_dtypes
import numpy as np
from onnx import NodeProto

from bitlens.core.formats import uniform
from bitlens.core.formats.families import int_activation
from bitlens.core.formats.family import (
    RANGE_TEXT,
    Encoded,
    FoldContext,
    FormatFamily,
    Range,
    float_scales_text,
)
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.qtensor import SCALE_BITS, QTensor, check_grid, group_ranges
from bitlens.core.formats.spec import INT_WIDTHS, Family, Format, Granularity

# Digit runs are bounded so int() never meets a 5000-digit number (a ValueError of its own).
_HEAD = re.compile(r"^(u?)int(\d{1,12})$")
NATIVE_INT = {
    (8, True): np.dtype(np.int8), (8, False): np.dtype(np.uint8),
    (16, True): np.dtype(np.int16), (16, False): np.dtype(np.uint16),
    (4, True): np.dtype(ml_dtypes.int4), (4, False): np.dtype(ml_dtypes.uint4),
    (2, True): np.dtype(ml_dtypes.int2), (2, False): np.dtype(ml_dtypes.uint2),
}  # fmt: skip
# DequantizeLinear per element type: int8 per axis needs 13; int4/int16 21; int2 25
QDQ_MIN_OPSET = {8: 13, 16: 21, 4: 21, 2: 25}


class IntFamily(FormatFamily):
    family = Family.INT
    grid_text = "a uniform grid of integer codes times a scale (plus a zero point if affine)"
    weight_choices = (
        "int8 sym ch", "int8 sym narrow ch", "int8 sym", "uint8 asym",
        "int6 sym ch", "int5 sym ch", "int4 sym ch", "int4 asym ch", "int4 sym blk32",
        "int4 asym blk32", "int3 sym ch", "int3 asym blk32", "int2 sym ch", "int2 asym blk32",
    )  # fmt: skip
    examples = (
        "int8 sym", "int8 sym narrow ch0", "uint8 asym", "int16 sym ch1", "int4 asym blk4@1",
        "int3 sym mse", "uint6 asym p99", "int2 sym ch0",
    )  # fmt: skip

    def parse_head(self, head: str) -> dict[str, object] | None:
        m = _HEAD.match(head)
        if not m:
            return None
        # Unsigned integers default to affine (the usual uint8 activation).
        return {"family": Family.INT, "bits": int(m.group(2)), "signed": not m.group(1),
                "symmetric": not m.group(1)}  # fmt: skip

    def head(self, fmt: Format) -> str:
        words = [f"{'' if fmt.signed else 'u'}int{fmt.bits}", "sym" if fmt.symmetric else "asym"]
        return " ".join([*words, "narrow"] if fmt.narrow else words)

    def validate(self, fmt: Format) -> str | None:
        if fmt.bits not in INT_WIDTHS:
            return f"integer width {fmt.bits} not supported (2 to 8, or 16)"
        return None

    # -- numerics -----------------------------------------------------------------------
    def quantize(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, value_range: Range | None, what: str
    ) -> QTensor:
        lo, hi = group_ranges(x, fmt, grouping, value_range, self.range_qdq(fmt), what)
        scale, zp = uniform.params_from_range(lo, hi, fmt)
        check_grid(uniform.grid_extremes(scale, zp, fmt), fmt, what)
        codes = uniform.quantize(x, grouping.expand(scale), _expand_zero_point(grouping, zp), fmt)
        return QTensor(fmt, codes, scale=scale, zero_point=zp)

    def dequantize(self, q: QTensor) -> np.ndarray:
        assert q.scale is not None and q.zero_point is not None
        g = q.grouping
        return uniform.dequantize(q.codes, g.expand(q.scale), _expand_zero_point(g, q.zero_point))

    def storage_bits(self, fmt: Format, g: Grouping) -> int:
        total = fmt.bits * g.numel + SCALE_BITS * g.n_groups
        if not fmt.symmetric or not fmt.signed:  # a zero point that is not implicitly 0
            total += fmt.bits * g.n_groups
        return total

    def range_qdq(self, fmt: Format):
        return uniform.qdq_groups(fmt)

    # -- engine and export --------------------------------------------------------------
    # int-q: the engine's Q/Clip/DQ form of a per-tensor int (uint8 Clip needs opset 12)
    activation_kinds = MappingProxyType({"int": 11, "int-dyn": 11, "int-q": 12})

    def activation_kind(self, fmt: Format, dynamic: bool) -> str | None:
        return "int-dyn" if dynamic else "int"

    def activation_nodes(
        self, kind: str, x: str, y: str, prefix: str
    ) -> tuple[list[NodeProto], tuple[str, ...]]:
        if kind == "int-dyn":
            return int_activation.dynamic_nodes(x, y, prefix)
        if kind == "int-q":
            return int_activation.qdq_nodes(x, y, prefix)
        return int_activation.static_nodes(x, y, prefix)

    def activation_feeds(
        self, kind: str, prefix: str, fmt: Format, lo: Any, hi: Any
    ) -> dict[str, np.ndarray]:
        return int_activation.feeds(kind, prefix, fmt, lo, hi)

    def activation_reference(
        self, kind: str, x: np.ndarray, feeds: Mapping[str, np.ndarray], prefix: str
    ) -> np.ndarray:
        return int_activation.reference(kind, x, feeds, prefix)

    def native_qdq_dtype(self, fmt: Format, allow_int2: bool) -> np.dtype | None:
        if fmt.bits == 2 and not allow_int2:
            return None
        return NATIVE_INT.get((fmt.bits, fmt.signed))

    def encode(self, ctx: FoldContext, q: QTensor) -> Encoded:
        fmt = q.fmt
        u = q.codes.astype(np.int32) - fmt.qmin  # offset codes in [0, 2^bits)
        zp_off = np.asarray(q.zero_point, np.int32) - fmt.qmin
        if fmt.bits in (8, 16):
            native = NATIVE_INT[(fmt.bits, fmt.signed)]
            values = ctx.to_float(ctx.store(q.codes.astype(native), "codes", "codes"))
            if not (fmt.symmetric and fmt.signed):
                zname = ctx.store(np.asarray(q.zero_point).astype(native), "zero_point", "zp")
                values = ctx.node("Sub", [values, ctx.broadcast(ctx.to_float(zname), "zp")])
            scheme, text = "native", f"{native.name} codes"
        else:
            values = ctx.to_float(ctx.codes(u, fmt.bits))
            if fmt.symmetric:
                offset = int(zp_off.ravel()[0])  # the same for every group
                if offset:
                    values = ctx.node("Sub", [values, ctx.const("zp", np.array(offset, np.float32))])
            else:
                zf = ctx.packed_params(zp_off, fmt.bits, "zero_point", "zp", "zshape")
                values = ctx.node("Sub", [values, zf])
            scheme, text = "packed", f"{fmt.bits}-bit packed codes"
        out = ctx.node("Mul", [values, ctx.param(q.scale, "scale", "scale")])
        return Encoded(out, scheme, f"{text}, float32 scale {ctx.granularity_text}")

    def export_min_opset(self, fmt: Format, native_qdq: bool) -> int:
        if not native_qdq:
            return 13
        need = max(QDQ_MIN_OPSET[fmt.bits], 21 if fmt.granularity is Granularity.BLOCK else 10)
        return max(need, 13) if fmt.granularity is Granularity.CHANNEL else need

    # -- views and help -----------------------------------------------------------------
    def grid(self, q: QTensor) -> tuple[np.ndarray, tuple[float, float] | None]:
        fmt = q.fmt
        assert q.scale is not None and q.zero_point is not None
        codes = np.arange(fmt.qmin, fmt.qmax + 1, dtype=np.int64)
        levels = np.unique((codes - int(q.zero_point)).astype(np.float32) * np.float32(q.scale))
        return levels, (float(levels[0]), float(levels[-1]))

    def levels(self, fmt: Format) -> int | None:
        return fmt.qmax - fmt.qmin + 1

    def grid_description(self, fmt: Format) -> str:
        text = self.grid_text + ("; symmetric" if fmt.symmetric else "; affine (zero point)")
        if fmt.narrow:
            text += ", narrow"
        return f"{text}; {RANGE_TEXT[fmt.range_method]}"

    def stores(self, fmt: Format) -> str:
        text = float_scales_text(fmt)
        if not fmt.symmetric or not fmt.signed:
            text += f"; a {fmt.bits}-bit zero point with each scale"
        return text

    def reference(self) -> list[tuple[str, str]]:
        widths = ", ".join(str(b) for b in sorted(INT_WIDTHS))
        return [(f"intN / uintN (N = {widths})", self.grid_text)]


def _expand_zero_point(grouping: Grouping, zp: np.ndarray) -> np.ndarray:
    """Zero points aligned with the tensor; all zero (symmetric signed formats) as one
    scalar 0, which uniform.quantize/dequantize skip: block formats otherwise repeat them
    to the weight's size, and every weight value had 0 added and subtracted."""
    zp = np.asarray(zp)
    return grouping.expand(zp) if zp.any() else np.zeros((), zp.dtype)
