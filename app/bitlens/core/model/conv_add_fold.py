"""Folding an Add of one constant per output channel that directly follows a Conv into the
Conv's bias.

Paddle2ONNX writes many convolutions without a bias, followed by ``Add(conv, b)`` with ``b``
a ``[1, C, 1, 1]`` constant (tinyocr's PP-OCRv6 detector: 83 of them). Quantized as it is,
the conv output's quantizer sits between the Conv and the Add, so the W8A8 export ran every
such Add in float between a DequantizeLinear and a QuantizeLinear (0.86 of its 4.4 ms of
node time in ONNX Runtime's profile, one thread) and the activation after it (Relu, a
residual Add) lost its integer kernel. ONNX Runtime folds the pair itself when it builds a
float session (``ConvAddFusion``,
https://github.com/microsoft/onnxruntime/blob/main/onnxruntime/core/optimizer/conv_add_fusion.cc),
so folding it in the loader's in-memory copy is what the float model already computes, up
to float reassociation, as for BatchNormalization (bitlens.core.model.bn_fold): the engine,
the export and the fidelity check then all see a Conv with a bias.

Only an Add whose other input is a float constant of the weight's type, one value per
output channel or one for all (``[C]``-free shapes such as ``[1, C, 1, 1]``, ``[C, 1, 1]``,
``[1]``), reading a Conv or ConvTranspose output that nothing else reads, is folded; the new
bias is ``b + c`` computed in float64 and stored in the weight's type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from bitlens.core.model.bn_fold import FoldContext, remove_nodes
from bitlens.core.model.graph import CONSTANT_DOMAINS


@dataclass(frozen=True)
class AddFoldResult:
    folded: int = 0  # Add nodes removed
    rewritten: frozenset[str] = frozenset()  # Conv biases given new values in place

    def note(self) -> str | None:
        """One line for the user, or None when nothing was folded."""
        if not self.folded:
            return None
        return (
            f"{self.folded} Add(s) of a per-channel constant folded into the Conv before them "
            "as its bias (in memory; the file is unchanged), as ONNX Runtime does: float "
            "outputs differ from the file's by float rounding only"
        )


def fold_conv_adds(model: onnx.ModelProto) -> AddFoldResult:
    """Fold every foldable Conv -> Add(constant) pair of the main graph (in place).

    Only for a model the caller owns (the loader's in-memory copy). The Conv keeps its name
    and takes over the Add's output name; a Conv without a bias (or sharing it) gets one
    named after the Add."""
    return AddFoldResult(*fold_after_convs(model, "Add", _fold_add))


# rewrites a conv for the constant after it: the names given new values in place, or None
# where the pair does not qualify (nothing changed)
PairFold = Callable[
    [onnx.NodeProto, str, onnx.NodeProto, FoldContext, onnx.GraphProto], "set[str] | None"
]


def fold_after_convs(
    model: onnx.ModelProto, op_type: str, fold: PairFold
) -> tuple[int, frozenset[str]]:
    """The walk the Add and Mul folds share: each ``op_type`` node of the main graph that
    reads a conv's output and a constant, and feeds no float fusion, is offered to ``fold``
    (conv, the constant's name, the node, context, graph); where it folds, the conv takes over
    the node's output and the node goes. The number of nodes removed and the names rewritten."""
    graph = model.graph
    ctx = FoldContext.of(graph)
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    drop: set[int] = set()
    freed: set[str] = set()
    rewritten: set[str] = set()
    for node in graph.node:
        if node.op_type != op_type or node.domain not in CONSTANT_DOMAINS or len(node.input) != 2:
            continue
        if feeds_a_float_fusion(node.output[0], readers):
            continue
        for i in (0, 1):
            conv = ctx.producer.get(node.input[i])
            names = fold(conv, node.input[1 - i], node, ctx, graph) if conv is not None else None
            if names is None:
                continue
            rewritten |= names
            conv.output[0] = node.output[0]
            ctx.producer[node.output[0]] = conv
            drop.add(id(node))
            freed.add(node.input[1 - i])
            break
    remove_nodes(graph, drop, freed, ctx.consumers)
    return len(drop), frozenset(rewritten)


def _fold_add(
    conv: onnx.NodeProto, other: str, add: onnx.NodeProto, ctx: FoldContext, graph: onnx.GraphProto
) -> set[str] | None:
    bias = _folded_bias(conv, other, ctx)
    if bias is None:
        return None
    had = conv.input[2] if len(conv.input) > 2 else ""
    name = ctx.set_bias(conv, bias, f"{add.name or add.output[0]}_folded_bias", graph)
    return {name} if name == had else set()


def feeds_a_float_fusion(name: str, readers: dict[str, list[onnx.NodeProto]]) -> bool:
    """Whether ``name`` (through Identity nodes) is read twice, by a Div or Mul among others:
    a GELU ``x * 0.5 * (1 + Erf(x / sqrt 2))`` or an ``x * f(x)`` that ONNX Runtime fuses in
    float only while both read one tensor. Folded, the conv output is quantized there, and
    ONNX Runtime gives each reader of a DequantizeLinear its own copy
    (``EnsureUniqueDQForNodeUnit``, onnxruntime/core/optimizer/qdq_transformer/
    ensure_unique_dq_for_node_unit.cc), so the fusion is lost: tinyocr's PP-OCRv6 detector's
    13 Gelus ran as Div, Erf, Add, Mul, Mul. Unfolded, the float Add's output feeds them."""
    seen = readers.get(name, [])
    while len(seen) == 1 and seen[0].op_type == "Identity":
        seen = readers.get(seen[0].output[0], [])
    flat: list[onnx.NodeProto] = []
    for node in seen:
        flat.extend(readers.get(node.output[0], [node]) if node.op_type == "Identity" else [node])
    return len(flat) > 1 and any(n.op_type in ("Div", "Mul") for n in flat)


def _folded_bias(conv: onnx.NodeProto, other: str, ctx: FoldContext) -> np.ndarray | None:
    """``conv``'s bias with the constant ``other`` added, if the pair qualifies."""
    if conv.op_type not in ("Conv", "ConvTranspose") or conv.domain not in CONSTANT_DOMAINS:
        return None
    if len(conv.input) < 2 or ctx.consumers.get(conv.output[0], 0) != 1:
        return None
    w, c = ctx.value(conv.input[1]), ctx.value(other)
    if w is None or c is None or w.ndim < 3 or c.dtype != w.dtype:
        return None
    if conv.op_type == "Conv":
        m = w.shape[0]
    else:  # ConvTranspose's weight is (C, M / group, k...)
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        m = w.shape[1] * group
    per_channel = channel_values(c, w.ndim, m)
    if per_channel is None:
        return None
    b_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
    b = np.zeros(m) if b_name is None else ctx.value(b_name)
    if b is None or b.shape != (m,):
        return None
    new = (b.astype(np.float64) + per_channel).astype(w.dtype)
    return new if np.isfinite(new).all() else None


def channel_values(c: np.ndarray, ndim: int, m: int) -> np.ndarray | None:
    """The constant ``c`` as ``m`` float64 values, one per output channel of a conv output of
    ``ndim`` dims (N, M, spatial...), if it broadcasts against that output as one value per
    channel or one for all (``[1, M, 1, 1]``, ``[M, 1, 1]``, ``[1]``); None otherwise (it
    would broadcast the output to more dims or along a spatial one)."""
    if c.ndim > ndim:
        return None
    dims = (1,) * (ndim - c.ndim) + c.shape
    if dims[0] != 1 or dims[1] not in (1, m) or any(d != 1 for d in dims[2:]):
        return None
    return np.broadcast_to(c.reshape(-1).astype(np.float64), (m,))
