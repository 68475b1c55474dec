"""Keep ONNX Runtime from quantizing the weights of Conv/Gemm layers the plan keeps float.

ONNX Runtime's WeightBiasQuantization (onnxruntime/core/optimizer/qdq_transformer/
weight_bias_quantization.cc, 1.20+) quantizes the float weight of a Conv, ConvTranspose or
Gemm to int8 per tensor whenever its input 0 is produced by a DequantizeLinear (measured on
1.31.1: when the output then reaches a QuantizeLinear, directly or through a Relu, the
weights change by up to a whole int8 step). The exporter puts a guard on the layers whose own
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

# ops WeightBiasQuantization rewrites (weight_bias_quantization.cc)
REQUANTIZED_BY_ORT = frozenset({"Conv", "ConvTranspose", "Gemm"})
_F32 = np.finfo(np.float32).max


def guard_float_readers(
    g: onnx.GraphProto, kernel_outputs: Collection[str], taken: set[str]
) -> list[str]:
    """Put a Clip between a DequantizeLinear and each main-graph Conv/ConvTranspose/Gemm
    reading it as input 0 that is not an integer-kernel layer (whose output is not in
    ``kernel_outputs``); returns the guarded nodes' outputs."""
    producer = {o: n for n in g.node for o in n.output if o}
    guarded: list[str] = []
    ordered: list[onnx.NodeProto] = []
    for node in g.node:
        src = producer.get(node.input[0]) if node.input else None
        if (
            node.op_type in REQUANTIZED_BY_ORT
            and node.output[0] not in kernel_outputs
            and src is not None
            and src.op_type == "DequantizeLinear"
        ):
            b = GraphBuilder(f"{node.output[0]}_guard", taken)
            lo = b.const("lo", np.asarray(-_F32, np.float32))
            hi = b.const("hi", np.asarray(_F32, np.float32))
            node.input[0] = b.node("Clip", [node.input[0], lo, hi])
            g.initializer.extend(b.initializers)
            ordered.extend(b.nodes)
            guarded.append(node.output[0])
        ordered.append(node)
    if guarded:
        del g.node[:]
        g.node.extend(ordered)
    return guarded
