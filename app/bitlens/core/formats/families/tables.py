"""Fixed lookup tables times a scale: NF (normal quantiles) and log2 (see ``lut.py``)."""

from __future__ import annotations

import re

import numpy as np

from bitlens.core.formats import lut
from bitlens.core.formats.family import (
    RANGE_TEXT,
    Encoded,
    FoldContext,
    FoldedWeightFamily,
    Range,
    float_scales_text,
)
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.qtensor import SCALE_BITS, QTensor, group_ranges
from bitlens.core.formats.spec import LUT_WIDTHS, Family, Format


class LookupNames(FoldedWeightFamily):
    """Names "<prefix><bits>" with widths 2 to 8, shared by the lookup-table families."""

    prefix: str

    def __init__(self) -> None:
        self._head = re.compile(rf"^{self.prefix}(\d{{1,12}})$")

    def parse_head(self, head: str) -> dict[str, object] | None:
        m = self._head.match(head)
        return {"family": self.family, "bits": int(m.group(1))} if m else None

    def head(self, fmt: Format) -> str:
        return f"{self.prefix}{fmt.bits}"

    def validate(self, fmt: Format) -> str | None:
        if fmt.bits not in LUT_WIDTHS:
            return f"{fmt.family} width {fmt.bits} not supported (2 to 8)"
        return None

    def reference(self) -> list[tuple[str, str]]:
        widths = ", ".join(str(b) for b in sorted(LUT_WIDTHS))
        return [(f"{self.prefix}N (N = {widths})", self.grid_text)]


class TableFamily(LookupNames):
    """Indices into a fixed table of levels in [-1, 1], scaled by the group's absolute max."""

    def table(self, fmt: Format) -> np.ndarray:
        return lut.fixed_levels(fmt.family, fmt.bits)  # type: ignore[arg-type]

    def quantize(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, value_range: Range | None, what: str
    ) -> QTensor:
        levels = self.table(fmt)
        lo, hi = group_ranges(x, fmt, grouping, value_range, self.range_qdq(fmt), what)
        scale = lut.absmax_scale(lo, hi)  # levels span [-1, 1]: the grid ends at +-scale
        codes = lut.scaled_quantize(x, grouping.expand(scale), levels)
        return QTensor(fmt, codes, scale=scale, codebook=levels)

    def dequantize(self, q: QTensor) -> np.ndarray:
        assert q.scale is not None and q.codebook is not None
        return lut.scaled_dequantize(q.codes, q.grouping.expand(q.scale), q.codebook)

    def storage_bits(self, fmt: Format, g: Grouping) -> int:
        table = SCALE_BITS * len(self.table(fmt))  # the level table, once per tensor
        return fmt.bits * g.numel + SCALE_BITS * g.n_groups + table

    def range_qdq(self, fmt: Format):
        return lut.lut_qdq_groups(self.table(fmt))

    def encode(self, ctx: FoldContext, q: QTensor) -> Encoded:
        assert q.codebook is not None
        levels = ctx.store(q.codebook.astype(np.float32), "levels", "levels")
        looked = ctx.node("Gather", [levels, ctx.codes(q.codes, q.fmt.bits)])
        out = ctx.node("Mul", [looked, ctx.param(q.scale, "scale", "scale")])
        text = (
            f"{q.fmt.bits}-bit packed indices into {q.codebook.size} levels, "
            f"float32 scale {ctx.granularity_text}"
        )
        return Encoded(out, "packed", text)

    def grid(self, q: QTensor) -> tuple[np.ndarray, tuple[float, float] | None]:
        assert q.codebook is not None and q.scale is not None
        levels = np.unique(np.asarray(q.codebook, np.float32) * np.float32(q.scale))
        return levels, (float(levels[0]), float(levels[-1]))

    def levels(self, fmt: Format) -> int | None:
        return len(self.table(fmt))

    def grid_description(self, fmt: Format) -> str:
        return f"{self.grid_text}; {RANGE_TEXT[fmt.range_method]}"

    def stores(self, fmt: Format) -> str:
        return f"{float_scales_text(fmt)}; the fixed level table once"


class NormalFloatFamily(TableFamily):
    family = Family.NF
    prefix = "nf"
    grid_text = "normal-float levels: quantiles of a normal distribution (as NF4), times a scale"
    weight_choices = ("nf4 blk64", "nf3 blk64")
    examples = ("nf4", "nf4 blk4@1", "nf3 ch0", "nf2 ch1 mse", "nf8 p99")


class Log2Family(TableFamily):
    family = Family.LOG2
    prefix = "log"
    grid_text = "signed powers of two times a scale: fine near zero, coarse at the ends"
    weight_choices = ("log4 ch",)
    examples = ("log4", "log3 ch1", "log5 blk4@1", "log4 mse")
