"""Which nodes are quantizable layers, and the axes of their weights.

A rule per op type picks the node's constant float weights and says, for
each, the output-channel axis (per-channel formats) and the reduction axis
(block formats). Constants are initializers or Constant-node outputs, in the
node's own graph or an enclosing one. A weight reached through a Cast,
Identity or Transpose of a constant is not followed: the exporter would have
to rewrite that chain, so such nodes are not layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from bitlens.core.model.graph import ConstSource, NodeSlot
from bitlens.core.model.tensors import FLOAT_DTYPE_NAMES, FLOAT_ELEM_TYPES, dtype_name
from bitlens.core.model.types import Layer, WeightInfo

DtypeOf = Callable[[str], str | None]  # dtype name of a graph value, None when unknown

RECURRENT = frozenset({"LSTM", "GRU", "RNN"})
CONV = frozenset({"Conv", "ConvTranspose"})
LAYER_OPS = CONV | RECURRENT | {"Gemm", "MatMul", "Gather"}  # the op types find_layer reads


@dataclass(frozen=True)
class _Pick:
    src: ConstSource
    channel_axis: int
    block_axis: int


def find_layer(slot: NodeSlot, dtype_of: DtypeOf) -> Layer | None:
    """The node as a quantizable Layer, or None when it has no float constant weight."""
    node = slot.node
    if node.domain not in ("", "ai.onnx"):
        return None
    op = node.op_type
    if op in CONV:
        return _conv(slot, dtype_of)
    if op == "Gemm":
        return _gemm(slot, dtype_of)
    if op == "MatMul":
        return _matmul(slot, dtype_of)
    if op == "Gather":
        return _gather(slot)
    if op in RECURRENT:
        return _recurrent(slot, dtype_of)
    return None


def _const(slot: NodeSlot, i: int) -> ConstSource | None:
    node = slot.node
    if i >= len(node.input) or not node.input[i]:
        return None
    return slot.scope.resolve(node.input[i])


def _float_const(slot: NodeSlot, i: int, min_rank: int = 1) -> ConstSource | None:
    src = _const(slot, i)
    if src is None or src.elem_type not in FLOAT_ELEM_TYPES or len(src.shape) < min_rank:
        return None
    return src


def _activation(slot: NodeSlot, i: int, dtype_of: DtypeOf) -> tuple[str, ...]:
    """The i-th input when it is a computed float value (unknown dtype counts as float)."""
    node = slot.node
    if i >= len(node.input) or not node.input[i] or _const(slot, i) is not None:
        return ()
    dtype = dtype_of(node.input[i])
    return (node.input[i],) if dtype is None or dtype in FLOAT_DTYPE_NAMES else ()


def _attr_int(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default


def _info(src: ConstSource, channel_axis: int, block_axis: int) -> WeightInfo:
    return WeightInfo(
        name=src.name,
        shape=src.shape,
        dtype=dtype_name(src.elem_type),
        storage=src.storage,
        graph_path=src.graph_path,
        channel_axis=channel_axis,
        block_axis=block_axis,
    )


def _layer(
    slot: NodeSlot,
    picks: list[_Pick],
    biases: list[ConstSource],
    activations: tuple[str, ...],
    scaled: bool = False,
) -> Layer | None:
    if not picks:
        return None
    node = slot.node
    return Layer(
        name=slot.name,
        op_type=node.op_type,
        index=slot.index,
        graph_path=slot.graph_path,
        inputs=tuple(node.input),
        outputs=tuple(node.output),
        weights=tuple(_info(p.src, p.channel_axis, p.block_axis) for p in picks),
        biases=tuple(_info(b, 0, 0) for b in biases),  # biases have no axes of their own
        activations=activations,
        scaled=scaled,
    )


def _conv(slot: NodeSlot, dtype_of: DtypeOf) -> Layer | None:
    # Conv W is [O, I/g, k...]; ConvTranspose W is [I, O/g, k...].
    w = _float_const(slot, 1, min_rank=3)
    if w is None:
        return None
    ch, blk = (0, 1) if slot.node.op_type == "Conv" else (1, 0)
    if blk == 1 and w.shape[1] == 1 and max(w.shape[2:]) > 1:
        # One input channel per group (a depthwise conv, an STFT as a 1-channel conv: Silero
        # VAD's 258x1x256): blocks along axis 1 would hold one value each, a scale per
        # weight. Every axis past 0 is summed over, so the blocks run along the longest
        # kernel axis instead.
        blk = 2 + max(range(len(w.shape) - 2), key=lambda i: w.shape[2 + i])
    b = _float_const(slot, 2)
    return _layer(slot, [_Pick(w, ch, blk)], [b] if b else [], _activation(slot, 0, dtype_of))


def _gemm(slot: NodeSlot, dtype_of: DtypeOf) -> Layer | None:
    node = slot.node
    a, b = _float_const(slot, 0, 2), _float_const(slot, 1, 2)
    if (a is None) == (b is None):  # no constant operand, or both (folded, not a layer)
        return None
    c = _float_const(slot, 2)
    biases = [c] if c else []
    scaled = any(at.name in ("alpha", "beta") and at.f != 1.0 for at in node.attribute)
    if b is not None:
        # B is [N, K] with transB=1, else [K, N]: N is the output channel.
        ch, blk = (0, 1) if _attr_int(node, "transB", 0) else (1, 0)
        return _layer(slot, [_Pick(b, ch, blk)], biases, _activation(slot, 0, dtype_of), scaled)
    assert a is not None
    # A is [M, K], or [K, M] with transA=1: M indexes output rows.
    ch, blk = (1, 0) if _attr_int(node, "transA", 0) else (0, 1)
    return _layer(slot, [_Pick(a, ch, blk)], biases, _activation(slot, 1, dtype_of), scaled)


def _matmul(slot: NodeSlot, dtype_of: DtypeOf) -> Layer | None:
    a, b = _float_const(slot, 0, 2), _float_const(slot, 1, 2)
    if (a is None) == (b is None):
        return None
    if b is not None:
        n = len(b.shape)  # [..., K, N]
        return _layer(slot, [_Pick(b, n - 1, n - 2)], [], _activation(slot, 0, dtype_of))
    assert a is not None
    n = len(a.shape)  # [..., M, K]
    return _layer(slot, [_Pick(a, n - 2, n - 1)], [], _activation(slot, 1, dtype_of))


def _gather(slot: NodeSlot) -> Layer | None:
    # An embedding table [V, D] looked up by computed indices along axis 0.
    data = _float_const(slot, 0, min_rank=2)
    if data is None or _const(slot, 1) is not None:
        return None
    if _attr_int(slot.node, "axis", 0) % len(data.shape) != 0:
        return None
    return _layer(slot, [_Pick(data, 0, 1)], [], ())


def _recurrent(slot: NodeSlot, dtype_of: DtypeOf) -> Layer | None:
    # W is [D, G*H, I] and R is [D, G*H, H]: gate rows are the output channels.
    picks = [_Pick(src, 1, 2) for i in (1, 2) if (src := _float_const(slot, i, 3)) is not None]
    # B (bias, input 3) and P (LSTM peepholes, input 7) stay float.
    bias_inputs = (3, 7) if slot.node.op_type == "LSTM" else (3,)
    biases = [src for i in bias_inputs if (src := _float_const(slot, i)) is not None]
    return _layer(slot, picks, biases, _activation(slot, 0, dtype_of))
