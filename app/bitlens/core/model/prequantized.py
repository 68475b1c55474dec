"""Recognizing a model that is already quantized.

Bitlens quantizes float models. A file that ONNX Runtime's quantizer (or
another tool) already turned into integer kernels keeps its weights as
int8 codes feeding ``ConvInteger``/``MatMulInteger``/``QLinearConv`` or a
``DequantizeLinear``; none of them is a float layer, so such a model would
show "no quantizable layers" with no reason. This names the reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import onnx

from bitlens.core.model.graph import subgraphs

# Ops whose presence means the model was quantized by a tool (ONNX and com.microsoft
# domains; https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
        "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul",
        "QGemm", "QLinearAdd", "QLinearMul", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM",
        "MatMulNBits", "MatMulIntegerToFloat", "QAttention", "QLinearSigmoid",
    }
)  # fmt: skip


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for _, g in subgraphs(node):
            yield from _nodes(g)


def quantized_ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in _nodes(model.graph) if n.op_type in QUANTIZED_OPS)


def describe(ops: Counter[str]) -> str:
    """``12 ConvInteger, 1 MatMulInteger, ...`` (most frequent first, at most four kinds)."""
    parts = [f"{n} {op}" for op, n in ops.most_common(4)]
    if len(ops) > 4:
        parts.append("...")
    return ", ".join(parts)


def note(ops: Counter[str], float_layers: int) -> str | None:
    if not ops:
        return None
    if float_layers:
        return (
            f"the model is partly quantized already ({describe(ops)}); only its "
            f"{float_layers} float layer(s) are listed"
        )
    return (
        f"the model is already quantized ({describe(ops)}) and has no float layer left to "
        "quantize; open the float model it was made from"
    )
