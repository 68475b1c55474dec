"""Keep ONNX Runtime from quantizing the weights of Conv/Gemm layers the plan keeps float.

ONNX Runtime's WeightBiasQuantization (onnxruntime/core/optimizer/qdq_transformer/
weight_bias_quantization.cc, 1.20+) quantizes the float weight of a Conv, ConvTranspose or
Gemm to int8 per tensor when its input 0 is produced by a DequantizeLinear and its output
reaches a QuantizeLinear (measured on 1.31.1, see _reaches_quantizer: the weights change by
up to a whole int8 step). The exporter puts a guard on the layers whose own
input quantizer it writes (layers._guard); a layer can also read a quantizer written for
another reason: a tensor the deployment target quantizes (a Conv output read by a float
one-output-channel Conv, by a layer with int4 weights, or by a layer the plan keeps float).
Those readers get a Clip to the float32 range: every dequantized value is finite, so it
passes unchanged, and the layer no longer reads a DequantizeLinear.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx

from bitlens.core.export.graph import GraphBuilder
from bitlens.core.export.kernels import PASS_TO_Q

# ops WeightBiasQuantization rewrites (weight_bias_quantization.cc)
REQUANTIZED_BY_ORT = frozenset({"Conv", "ConvTranspose", "Gemm"})
_F32 = np.finfo(np.float32).max


def fused_output(node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]) -> str | None:
    """The output of the node ONNX Runtime may re-quantize ``node``'s weights in, else None.

    A MatMul read by one Add becomes a Gemm first (MatMulAddFusion, a level-1 rewrite:
    onnxruntime/core/optimizer/matmul_add_fusion.cc), whose output is the Add's; measured on
    1.31.1 with OSKut's Dense layers (tf2onnx, 2-D MatMul + bias Add): int3 weights folded
    to float were re-quantized to int8 inside a QGemm and the next layer's uint8 input moved
    by 2 LSB. Any Add counts: guarding a layer that would not fuse costs one float Clip.
    A Cast to float32 between them (open_nsfw's head, tf2onnx) counts as nothing: the MatMul
    of a dequantized (float32) input already is float32, and ONNX Runtime removes the Cast
    before fusing (measured on 1.31.1: int3 weights re-quantized inside a QGemm, 3 LSB)."""
    if node.op_type in REQUANTIZED_BY_ORT:
        return node.output[0]
    if node.op_type == "MatMul":
        users = consumers.get(node.output[0], [])
        while len(users) == 1 and _float_cast(users[0]):
            users = consumers.get(users[0].output[0], [])
        if len(users) == 1 and users[0].op_type == "Add":
            return users[0].output[0]
    return None


def fused_output_in(node: onnx.NodeProto, g: onnx.GraphProto) -> str | None:
    """:func:`fused_output` of ``node`` in ``g``, whose readers are indexed only for a MatMul
    (the only op whose answer depends on them): the index is a pass over every node, and
    an export asks once per quantized layer (on PP-OCRv5's recognizer, 860 nodes, an eighth
    of the search's export-cost measurements)."""
    return fused_output(node, consumers_of(g) if node.op_type == "MatMul" else {})


def _float_cast(node: onnx.NodeProto) -> bool:
    return node.op_type == "Cast" and any(
        a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in node.attribute
    )


def consumers_of(g: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    return consumers


def guard_float_readers(
    g: onnx.GraphProto, kernel_outputs: Collection[str], taken: set[str]
) -> dict[str, str]:
    """Put a Clip between a DequantizeLinear and each main-graph Conv/ConvTranspose/Gemm (or
    MatMul that becomes one, see fused_output) reading it as input 0 that is not an integer-kernel layer (whose output is not in
    ``kernel_outputs``) and whose output reaches a quantizer; returns each guarded node's
    output -> the Clip's output it now reads."""
    producer = {o: n for n in g.node for o in n.output if o}
    consumers = consumers_of(g)
    guarded: dict[str, str] = {}
    ordered: list[onnx.NodeProto] = []
    for node in g.node:
        src = producer.get(node.input[0]) if node.input else None
        fused = fused_output(node, consumers)
        if (
            fused is not None
            and node.output[0] not in kernel_outputs
            and src is not None
            and src.op_type == "DequantizeLinear"
            and _reaches_quantizer(fused, consumers, len(g.node))
        ):
            b = GraphBuilder(f"{node.output[0]}_guard", taken)
            lo = b.const("lo", np.asarray(-_F32, np.float32))
            hi = b.const("hi", np.asarray(_F32, np.float32))
            node.input[0] = b.node("Clip", [node.input[0], lo, hi])
            g.initializer.extend(b.initializers)
            ordered.extend(b.nodes)
            guarded[node.output[0]] = node.input[0]
        ordered.append(node)
    if guarded:
        del g.node[:]
        g.node.extend(ordered)
    return guarded


def _reaches_quantizer(t: str, consumers: dict[str, list[onnx.NodeProto]], most: int) -> bool:
    """Whether ``t`` reaches a QuantizeLinear through single consumers ONNX Runtime moves a
    quantizer across (kernels.PASS_TO_Q). Measured on 1.31.1: a Conv followed by Q, Relu -> Q
    or Transpose -> Q had its weights re-quantized; followed by Add -> Q, Sigmoid -> Q, a Relu
    or nothing (a graph output), it kept them."""
    for _ in range(most):
        users = consumers.get(t, [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            return True
        if len(users) != 1 or users[0].op_type not in PASS_TO_Q:
            return False
        t = users[0].output[0]
    return False
