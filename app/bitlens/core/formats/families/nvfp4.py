"""NVFP4: FP4 E2M1 elements, an FP8 E4M3 scale per block of 16, and one float32 tensor scale.

NVIDIA's two-level microscaling for 4-bit floats (Blackwell; the recipe of
TensorRT Model Optimizer's ``NVFP4QTensor``, https://github.com/NVIDIA/TensorRT-Model-Optimizer,
``modelopt/torch/quantization/qtensor/nvfp4_tensor.py``): the tensor scale
``s_t = amax(|W|) / (6 * 448)`` maps the tensor's range onto E2M1's largest
value (6) times E4M3's (448); each block of 16 along the reduction axis
stores ``s_b = e4m3(amax_block / 6 / s_t)``; the elements are
``e2m1(W / (s_b * s_t))`` rounded to nearest even and saturating at ±6.
Decoding computes ``e2m1 * (float32(s_b) * s_t)`` in float32, the same
products the exported subgraph (Cast of the E4M3 scales, Mul by the tensor
scale, Gather of the 16 element values, Mul) computes in ONNX Runtime.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from bitlens.core.formats.families.mx import Element, _emax, table_bits
from bitlens.core.formats.family import Encoded, FoldContext, FormatFamily, Range
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.qtensor import QTensor
from bitlens.core.formats.spec import Format, Granularity, RangeMethod

NV_BLOCK = 16
FP4 = Element("FP4 E2M1", 4, np.dtype(ml_dtypes.float4_e2m1fn), _emax(ml_dtypes.float4_e2m1fn))
E4M3 = np.dtype(ml_dtypes.float8_e4m3fn)
E4M3_MAX = np.float32(448.0)
FP4_MAX = np.float32(6.0)
_TINY = np.float32(np.finfo(np.float32).tiny)


def tensor_scale(amax: float) -> np.float32:
    """``amax / (6 * 448)`` in float32 (1 for an all-zero tensor, never below the smallest
    normal, so every division by it is finite)."""
    if amax == 0:
        return np.float32(1.0)
    return max(np.float32(np.float64(amax) / (float(FP4_MAX) * float(E4M3_MAX))), _TINY)


def block_scales(amax_blocks: np.ndarray, s_t: np.float32) -> np.ndarray:
    """Each block's E4M3 scale ``e4m3(amax / 6 / s_t)`` (saturating at 448), as float32."""
    raw = (np.asarray(amax_blocks, np.float32) / FP4_MAX) / s_t
    return np.clip(raw, 0, E4M3_MAX).astype(E4M3).astype(np.float32)


class NVFP4Family(FormatFamily):
    family = "nvfp4"
    grid_text = (
        "FP4 E2M1 elements times an FP8 E4M3 scale per block of 16 and a float32 tensor scale"
    )
    weight_choices = (f"nvfp4 blk{NV_BLOCK}",)
    examples = ("nvfp4", f"nvfp4 blk{NV_BLOCK}@0", f"nvfp4 blk{NV_BLOCK}@1")

    def parse_head(self, head: str) -> dict[str, object] | None:
        if head != self.family:
            return None
        return {"family": self.family, "bits": 4, "granularity": Granularity.BLOCK,
                "block_size": NV_BLOCK}  # fmt: skip

    def head(self, fmt: Format) -> str:
        return self.family

    def validate(self, fmt: Format) -> str | None:
        if fmt.bits != 4:
            return f"nvfp4 elements have 4 bits, not {fmt.bits}"
        if fmt.granularity is not Granularity.BLOCK or fmt.block_size != NV_BLOCK:
            return f"nvfp4 shares one scale per block of {NV_BLOCK} (blk{NV_BLOCK})"
        if fmt.range_method is not RangeMethod.MINMAX:
            return "nvfp4 scales each block by its largest magnitude; no range method"
        return None

    # -- numerics -----------------------------------------------------------------------
    def quantize(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, value_range: Range | None, what: str
    ) -> QTensor:
        x32 = np.asarray(x).astype(np.float32, copy=False)
        s_t = tensor_scale(float(np.max(np.abs(x32))))
        amax = np.fmax.reduce(np.abs(grouping.groups(x32)), axis=1)  # NaN padding skipped
        s_b = grouping.to_params(block_scales(amax, s_t))
        eff = grouping.expand(s_b * s_t).astype(np.float32)  # the decode's own product
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            v = np.where(eff > 0, x32 / eff, np.float32(0)).astype(np.float32)
        return QTensor(fmt, FP4.cast(v), scale=s_b, tensor_scale=np.asarray(s_t, np.float32))

    def dequantize(self, q: QTensor) -> np.ndarray:
        assert q.scale is not None and q.tensor_scale is not None
        eff = (np.asarray(q.scale, np.float32) * np.float32(q.tensor_scale)).astype(np.float32)
        return FP4.decode(q.codes) * q.grouping.expand(eff)

    def storage_bits(self, fmt: Format, g: Grouping) -> int:
        # codes, E4M3 block scales, the tensor scale and the 16 element values (float32)
        return 4 * g.numel + 8 * g.n_groups + 32 + table_bits(FP4)

    # -- engine and export --------------------------------------------------------------
    def activation_kind(self, fmt: Format, dynamic: bool) -> str | None:
        return None  # weights only

    def native_qdq_dtype(self, fmt: Format, allow_int2: bool) -> np.dtype | None:
        return None  # ONNX Runtime 1.31 has no CPU kernel for FLOAT4E2M1 DequantizeLinear

    def encode(self, ctx: FoldContext, q: QTensor) -> Encoded:
        assert q.scale is not None and q.tensor_scale is not None
        table = ctx.store(FP4.table(), "levels", "levels")
        values = ctx.node("Gather", [table, ctx.codes(FP4.raw(q.codes), 4)])
        s_b = ctx.to_float(ctx.store(np.asarray(q.scale).astype(E4M3), "scale", "scale"))
        s_t = ctx.store(np.asarray(q.tensor_scale, np.float32), "scale", "tscale")
        eff = ctx.broadcast(ctx.node("Mul", [s_b, s_t]), "scale")
        text = (
            f"4-bit packed FP4 E2M1 codes, E4M3 scale {ctx.granularity_text}, "
            "float32 tensor scale"
        )
        return Encoded(ctx.node("Mul", [values, eff]), "packed", text, 19)

    def export_min_opset(self, fmt: Format, native_qdq: bool) -> int:
        return 19  # Cast from float8

    # -- views and help -----------------------------------------------------------------
    def grid(self, q: QTensor) -> tuple[np.ndarray, tuple[float, float] | None]:
        assert q.scale is not None and q.tensor_scale is not None
        eff = np.float32(np.ravel(q.scale)[0]) * np.float32(q.tensor_scale)
        levels = np.unique(FP4.table() * eff)
        m = float(FP4_MAX * eff)
        return levels, (-m, m)

    def group_grid(
        self, x: np.ndarray, fmt: Format, group: int, values: np.ndarray, value_range: Range | None
    ) -> QTensor:
        from bitlens.core.formats.codec import quantize

        # the block's grid depends on the whole tensor's scale: quantize it all, keep one block
        q = quantize(x, fmt, what="tensor")
        s_b = np.ravel(q.scale)[group : group + 1]
        return QTensor(fmt.replace(axis=0), FP4.cast(np.zeros(1, np.float32)), scale=s_b,
                       tensor_scale=q.tensor_scale)  # fmt: skip

    def levels(self, fmt: Format) -> int | None:
        return int(np.unique(FP4.table()).size)

    def grid_description(self, fmt: Format) -> str:
        return f"{self.grid_text}; elements rounded to nearest even, saturating at ±6"

    def stores(self, fmt: Format) -> str:
        return (
            f"an FP8 E4M3 scale per block of {NV_BLOCK} values, one float32 tensor scale and "
            "the 16-entry element value table"
        )

    def reference(self) -> list[tuple[str, str]]:
        return [(self.family, self.grid_text)]
