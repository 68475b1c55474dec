"""Ternary {-a, 0, +a} and binary {-a, +a} (see ``sign.py``)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from bitlens.core.formats import sign
from bitlens.core.formats.family import (
    RANGE_TEXT,
    Encoded,
    FoldContext,
    FoldedWeightFamily,
    Range,
    float_scales_text,
)
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.qtensor import SCALE_BITS, QTensor
from bitlens.core.formats.spec import Family, Format, Granularity, RangeMethod


class _SignFamily(FoldedWeightFamily):
    word: str

    levels_count: int

    def parse_head(self, head: str) -> dict[str, object] | None:
        return {"family": self.family, "bits": self.levels_count - 1} if head == self.word else None

    def head(self, fmt: Format) -> str:
        return self.word

    def _validate_common(self, fmt: Format) -> str | None:
        if fmt.granularity is Granularity.BLOCK:
            return f"{self.family} formats are per tensor or per channel"
        return None

    def storage_bits(self, fmt: Format, g: Grouping) -> int:
        return fmt.bits * g.numel + SCALE_BITS * g.n_groups

    def levels(self, fmt: Format) -> int | None:
        return self.levels_count

    def stores(self, fmt: Format) -> str:
        return float_scales_text(fmt)

    def reference(self) -> list[tuple[str, str]]:
        return [(self.word, self.grid_text)]


class TernaryFamily(_SignFamily):
    family = Family.TERNARY
    word = "tern"
    levels_count = 3
    grid_text = "three levels {−a, 0, +a}"
    weight_choices = ("tern ch",)
    examples = ("tern", "tern ch0", "tern mse", "tern ch1 mse")

    def validate(self, fmt: Format) -> str | None:
        if fmt.bits != 2:
            return "ternary is stored in 2 bits"
        if msg := self._validate_common(fmt):
            return msg
        if fmt.range_method is RangeMethod.PERCENTILE:
            return "ternary takes the min-max (TWN) or mse threshold, not a percentile"
        return None

    def quantize(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, value_range: Range | None, what: str
    ) -> QTensor:
        groups = grouping.groups(x.astype(np.float64))
        thr, alpha = sign.ternary_params(groups, search=fmt.range_method is RangeMethod.MSE)
        thr, alpha = grouping.to_params(thr), grouping.to_params(alpha)
        codes = sign.ternary_quantize(x, grouping.expand(thr))
        return QTensor(fmt, codes, scale=alpha, threshold=thr)

    def dequantize(self, q: QTensor) -> np.ndarray:
        assert q.scale is not None
        return sign.ternary_dequantize(q.codes, q.grouping.expand(q.scale))

    def encode(self, ctx: FoldContext, q: QTensor) -> Encoded:
        u = ctx.codes(q.codes.astype(np.int32) + 1, 2)
        values = ctx.node("Sub", [ctx.to_float(u), ctx.const("one", np.array(1, np.float32))])
        out = ctx.node("Mul", [values, ctx.param(q.scale, "scale", "alpha")])
        return Encoded(
            out, "packed", f"2-bit packed ternary codes, float32 alpha {ctx.granularity_text}"
        )

    def grid(self, q: QTensor) -> tuple[np.ndarray, tuple[float, float] | None]:
        a = float(np.asarray(q.scale))
        levels = np.unique(np.array([-a, 0.0, a], np.float32))
        return levels, (float(levels[0]), float(levels[-1]))

    def grid_description(self, fmt: Format) -> str:
        return f"{self.grid_text}; {RANGE_TEXT[fmt.range_method]}"


class BinaryFamily(_SignFamily):
    family = Family.BINARY
    word = "bin"
    levels_count = 2
    grid_text = "two levels {−a, +a}"
    weight_choices = ("bin ch",)
    examples = ("bin", "bin ch0", "bin ch1")

    def validate(self, fmt: Format) -> str | None:
        if fmt.bits != 1:
            return "binary is stored in 1 bit"
        if msg := self._validate_common(fmt):
            return msg
        if fmt.range_method is not RangeMethod.MINMAX:
            return "binary uses alpha = mean |x|; it takes no range method"
        return None

    def quantize(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, value_range: Range | None, what: str
    ) -> QTensor:
        alpha = grouping.to_params(sign.binary_alpha(grouping.groups(x)))
        return QTensor(fmt, sign.binary_quantize(x), scale=alpha)

    def dequantize(self, q: QTensor) -> np.ndarray:
        assert q.scale is not None
        return sign.binary_dequantize(q.codes, q.grouping.expand(q.scale))

    def encode(self, ctx: FoldContext, q: QTensor) -> Encoded:
        cond = ctx.node("Cast", [ctx.codes(q.codes, 1)], to=TensorProto.BOOL)
        alpha = ctx.param(q.scale, "scale", "alpha")
        out = ctx.node("Where", [cond, alpha, ctx.node("Neg", [alpha])])
        return Encoded(out, "packed", f"1-bit packed signs, float32 alpha {ctx.granularity_text}")

    def grid(self, q: QTensor) -> tuple[np.ndarray, tuple[float, float] | None]:
        a = float(np.asarray(q.scale))
        levels = np.unique(np.array([-a, a], np.float32))
        return levels, (float(levels[0]), float(levels[-1]))

    def grid_description(self, fmt: Format) -> str:
        return f"{self.grid_text}; {RANGE_TEXT[fmt.range_method]}"
