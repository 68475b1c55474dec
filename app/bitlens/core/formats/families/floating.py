"""Floats: plain casts (fp64 ... bf16) and fp8 with a scale per group (see ``floats.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np
from onnx import NodeProto, TensorProto, helper

from bitlens.core.formats import floats
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
from bitlens.core.formats.spec import (
    FLOAT_KINDS,
    Family,
    Format,
    Granularity,
    RangeMethod,
)

_ALIASES = {"fp8e4m3": "fp8e4m3fn", "float16": "fp16", "float32": "fp32", "float64": "fp64"}
_CAST_TO = {
    "fp16": TensorProto.FLOAT16,
    "bf16": TensorProto.BFLOAT16,
    "fp8e4m3fn": TensorProto.FLOAT8E4M3FN,
    "fp8e5m2": TensorProto.FLOAT8E5M2,
}


class FloatFamily(FormatFamily):
    family = Family.FLOAT
    grid_text = "a floating-point grid: relative precision, finer near zero"
    weight_choices = ("fp16", "bf16", "fp8e4m3fn ch", "fp8e5m2 ch")
    examples = ("fp32", "fp16", "bf16", "fp8e4m3fn", "fp8e5m2 ch0", "fp8e4m3fn blk4@1 mse")

    def parse_head(self, head: str) -> dict[str, object] | None:
        kind = _ALIASES.get(head, head)
        if kind not in FLOAT_KINDS:
            return None
        return {"family": Family.FLOAT, "bits": FLOAT_KINDS[kind], "float_kind": kind}

    def head(self, fmt: Format) -> str:
        return fmt.float_kind

    def validate(self, fmt: Format) -> str | None:
        if fmt.float_kind not in FLOAT_KINDS:
            return f"unknown float kind {fmt.float_kind!r} (known: {', '.join(FLOAT_KINDS)})"
        if fmt.bits != FLOAT_KINDS[fmt.float_kind]:
            return f"{fmt.float_kind} has {FLOAT_KINDS[fmt.float_kind]} bits, not {fmt.bits}"
        if not self.has_scale(fmt):
            if fmt.granularity is not Granularity.TENSOR:
                return f"{fmt.float_kind} is a plain cast and takes no channel or block scale"
            if fmt.range_method is not RangeMethod.MINMAX:
                return f"{fmt.float_kind} is a plain cast and takes no range method"
        return None

    def plain_dtype(self, fmt: Format) -> np.dtype | None:
        return None if fmt.float_kind.startswith("fp8") else floats.FLOAT_DTYPES[fmt.float_kind]

    # -- numerics -----------------------------------------------------------------------
    def quantize(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, value_range: Range | None, what: str
    ) -> QTensor:
        if not self.has_scale(fmt):
            return QTensor(fmt, floats.cast(x, fmt.float_kind))
        lo, hi = group_ranges(x, fmt, grouping, value_range, self.range_qdq(fmt), what)
        scale = floats.fp8_scale(lo, hi, fmt.float_kind)
        check_grid(floats.fp8_extremes(scale, fmt.float_kind), fmt, what)
        codes = floats.fp8_quantize(x, grouping.expand(scale), fmt.float_kind)
        return QTensor(fmt, codes, scale=scale)

    def dequantize(self, q: QTensor) -> np.ndarray:
        if not self.has_scale(q.fmt):
            return q.codes if q.fmt.float_kind == "fp64" else q.codes.astype(np.float32)
        assert q.scale is not None
        return floats.fp8_dequantize(q.codes, q.grouping.expand(q.scale))

    def storage_bits(self, fmt: Format, g: Grouping) -> int:
        return fmt.bits * g.numel + (SCALE_BITS * g.n_groups if self.has_scale(fmt) else 0)

    def range_qdq(self, fmt: Format):
        return floats.fp8_qdq_groups(fmt.float_kind)

    # -- engine and export --------------------------------------------------------------
    # y = Cast back(Cast(x)) for fp16/bf16; y = Cast back(Cast(x / s, saturate)) * s for fp8
    activation_kinds = MappingProxyType({"fp16": 1, "bf16": 13, "fp8e4m3fn": 19, "fp8e5m2": 19})

    def activation_kind(self, fmt: Format, dynamic: bool) -> str | None:
        return fmt.float_kind if fmt.float_kind in self.activation_kinds else None

    def activation_nodes(
        self, kind: str, x: str, y: str, prefix: str
    ) -> tuple[list[NodeProto], tuple[str, ...]]:
        n, mk, to = f"{prefix}__aq", helper.make_node, _CAST_TO[kind]
        if kind in ("fp16", "bf16"):
            nodes = [
                mk("Cast", [x], [f"{n}_cast"], name=f"{n}_cast", to=to),
                mk("Cast", [f"{n}_cast"], [y], name=f"{n}_back", to=TensorProto.FLOAT),
            ]
            return nodes, ()
        s = f"{prefix}__scale"
        nodes = [
            mk("Div", [x, s], [f"{n}_div"], name=f"{n}_div"),
            mk("Cast", [f"{n}_div"], [f"{n}_cast"], name=f"{n}_cast", to=to, saturate=1),
            mk("Cast", [f"{n}_cast"], [f"{n}_back"], name=f"{n}_back", to=TensorProto.FLOAT),
            mk("Mul", [f"{n}_back", s], [y], name=f"{n}_mul"),
        ]
        return nodes, (s,)

    def activation_feeds(
        self, kind: str, prefix: str, fmt: Format, lo: Any, hi: Any
    ) -> dict[str, np.ndarray]:
        if kind in ("fp16", "bf16"):
            return {}
        scale = floats.fp8_scale(np.asarray(lo), np.asarray(hi), kind)
        return {f"{prefix}__scale": np.asarray(scale, np.float32)}

    def activation_reference(
        self, kind: str, x: np.ndarray, feeds: Mapping[str, np.ndarray], prefix: str
    ) -> np.ndarray:
        x = x.astype(np.float32)
        if kind in ("fp16", "bf16"):
            return floats.cast(x, kind).astype(np.float32)
        s = feeds[f"{prefix}__scale"]
        return floats.fp8_dequantize(floats.fp8_quantize(x, s, kind), s)

    def native_qdq_dtype(self, fmt: Format, allow_int2: bool) -> np.dtype | None:
        return floats.FLOAT_DTYPES[fmt.float_kind] if self.has_scale(fmt) else None

    def encode(self, ctx: FoldContext, q: QTensor) -> Encoded:
        fmt = q.fmt
        dt = floats.FLOAT_DTYPES[fmt.float_kind]
        values = ctx.to_float(ctx.store(q.codes.astype(dt), "codes", "codes"))
        out = ctx.node("Mul", [values, ctx.param(q.scale, "scale", "scale")])
        text = f"{fmt.float_kind} codes, float32 scale {ctx.granularity_text}"
        return Encoded(out, "native", text, 19)

    def export_min_opset(self, fmt: Format, native_qdq: bool) -> int:
        if native_qdq:
            return 21 if fmt.granularity is Granularity.BLOCK else 19
        if self.has_scale(fmt):
            return 19
        return 13 if fmt.float_kind == "bf16" else 1

    # -- views and help -----------------------------------------------------------------
    def grid(self, q: QTensor) -> tuple[np.ndarray, tuple[float, float] | None]:
        if not self.has_scale(q.fmt):
            return np.empty(0, np.float32), None
        assert q.scale is not None  # fp8: symmetric, clip at the largest finite value
        m = float(floats.fmax(q.fmt.float_kind) * float(q.scale))
        return np.empty(0, np.float32), (-m, m)  # 250-odd levels: too many to draw

    def levels(self, fmt: Format) -> int | None:
        return 2**8 if self.has_scale(fmt) else None

    def grid_description(self, fmt: Format) -> str:
        if not self.has_scale(fmt):
            return self.grid_text
        return f"{self.grid_text}; {RANGE_TEXT[fmt.range_method]}"

    def stores(self, fmt: Format) -> str:
        return float_scales_text(fmt) if self.has_scale(fmt) else "nothing else (a plain cast)"

    def reference(self) -> list[tuple[str, str]]:
        rows = []
        for kind, bits in FLOAT_KINDS.items():
            scale = ", with a scale" if kind.startswith("fp8") else ""
            rows.append((kind, f"{bits}-bit float{scale}: {self.grid_text}"))
        return rows
