"""k-means codebooks of 2^n levels fitted to the values, per tensor or per channel."""

from __future__ import annotations

import numpy as np

from bitlens.core.formats import lut_rows
from bitlens.core.formats.families.tables import LookupNames
from bitlens.core.formats.family import Encoded, FoldContext, Range, scale_where
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.qtensor import SCALE_BITS, QTensor
from bitlens.core.formats.spec import Family, Format, Granularity, RangeMethod


class KMeansFamily(LookupNames):
    family = Family.KMEANS
    prefix = "km"
    grid_text = "a codebook of levels fitted by k-means to the values, stored with them"
    weight_choices = ("km4 ch", "km2 ch")
    examples = ("km4", "km2 ch0", "km3 ch1", "km8")
    iterative_fit = True

    def validate(self, fmt: Format) -> str | None:
        if msg := super().validate(fmt):
            return msg
        if fmt.granularity is Granularity.BLOCK:
            return f"{fmt.family} formats are per tensor or per channel"
        if fmt.range_method is not RangeMethod.MINMAX:
            return "k-means fits its own levels; it takes no range method"
        return None

    def quantize(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, value_range: Range | None, what: str
    ) -> QTensor:
        k = 2**fmt.bits
        groups = grouping.groups(x.astype(np.float64))
        # every group at once; the same numbers as lut.kmeans_1d / lut.nearest group by group
        books, codes_g = lut_rows.kmeans_rows(groups, k)  # (G, k), (G, S)
        return self._qtensor(fmt, grouping, books, codes_g)

    def fitted(self, q: QTensor) -> np.ndarray:
        """The ``(G, k)`` codebooks (a few bytes per channel, where the codes and values are
        the size of the weight: the engine's weight cache drops those and keeps these)."""
        assert q.codebook is not None
        return np.atleast_2d(q.codebook)

    def quantize_fitted(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, fit: object, what: str
    ) -> QTensor:
        groups = grouping.groups(x.astype(np.float64))
        books = np.asarray(fit)
        return self._qtensor(fmt, grouping, books, lut_rows.nearest_rows(groups, books))

    @staticmethod
    def _qtensor(fmt: Format, grouping: Grouping, books: np.ndarray, codes_g: np.ndarray) -> QTensor:
        codes = grouping.ungroup(codes_g).astype(np.uint8)
        book = books[0] if grouping.n_groups == 1 and grouping.param_shape == () else books
        return QTensor(fmt, codes, codebook=book)

    def dequantize(self, q: QTensor) -> np.ndarray:
        assert q.codebook is not None
        if q.codebook.ndim == 1:
            return q.codebook[q.codes.astype(np.int64)]
        g = q.grouping
        cg = g.groups(q.codes).astype(np.int64)  # (C, S): channel c uses codebook[c]
        return g.ungroup(np.take_along_axis(q.codebook, cg, axis=1))

    def storage_bits(self, fmt: Format, g: Grouping) -> int:
        return fmt.bits * g.numel + SCALE_BITS * 2**fmt.bits * g.n_groups

    def encode(self, ctx: FoldContext, q: QTensor) -> Encoded:
        assert q.codebook is not None
        book = q.codebook.astype(np.float32)
        codes = ctx.codes(q.codes, q.fmt.bits)
        bname = ctx.store(book.ravel(), "codebook", "codebook")
        if book.ndim == 2:  # one codebook per channel: index channel c's row of the flat table
            c, levels = book.shape
            offs = ctx.node(
                "Range",
                [
                    ctx.const("r0", np.array(0, np.int64)),
                    ctx.const("r1", np.array(c * levels, np.int64)),
                    ctx.const("rstep", np.array(levels, np.int64)),
                ],
            )
            codes = ctx.node("Add", [codes, ctx.broadcast(offs, "rows")])
        out = ctx.node("Gather", [bname, codes])
        text = f"{q.fmt.bits}-bit packed indices, float32 codebook {ctx.granularity_text}"
        return Encoded(out, "packed", text)

    def grid(self, q: QTensor) -> tuple[np.ndarray, tuple[float, float] | None]:
        assert q.codebook is not None
        levels = np.unique(np.asarray(q.codebook, np.float32).ravel())
        return levels, (float(levels[0]), float(levels[-1]))

    def levels(self, fmt: Format) -> int | None:
        return 2**fmt.bits

    def grid_description(self, fmt: Format) -> str:
        return self.grid_text

    def stores(self, fmt: Format) -> str:
        return (
            f"float{SCALE_BITS} scale(s): {scale_where(fmt)}; a codebook of {2**fmt.bits} "
            f"float{SCALE_BITS} levels per group"
        )
