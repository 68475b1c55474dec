"""LSTMs the engine runs as ONNX Runtime's ``DynamicQuantizeLSTM``, the kernel the export
writes (bitlens.core.export.dynamic_lstm, chosen by bitlens.core.lstm_kernel.runs_kernel).

The kernel quantizes the hidden state to uint8 at every step, inside the recurrence, so
no quantizer in front of a float LSTM computes what it does (a float LSTM on dequantized
weights behind a dynamic uint8 quantizer of ``X`` put thai2rom's encoder at 47.9 dB where
the file gave 46.8). The kernel reads its int8 codes, scales and zero points as graph
inputs as well as initializers (onnxruntime/contrib_ops/cpu/quantization/
dynamic_quantize_lstm.cc pre-packs ``W``/``R`` only when they are constant, and computes
from the fed tensors otherwise; tests/core/test_export_dynamic_lstm.py checks the outputs
are the same bit for bit), so the engine's graphs run the kernel itself, fed the codes of
the plan's weight format: a new format is still a feed, not a new graph.

Such a layer's kind is :data:`KIND`: the kernel quantizes ``X`` itself, so the layer gets
no activation quantizer.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from bitlens.core.engine.graphs import value_info
from bitlens.core.lstm_kernel import kernel_params
from bitlens.core.model.types import Layer
from bitlens.core.quantized import QuantizedWeight

KIND = "lstm-kernel"
OP = "DynamicQuantizeLSTM"
DOMAIN = "com.microsoft"
_LSTM_INPUTS = 8  # X, W, R, B, sequence_lens, initial_h, initial_c, P; then the parameters


def codes_input(weight: str) -> str:
    return f"{weight}__kernel_codes"


def scale_input(weight: str) -> str:
    return f"{weight}__kernel_scale"


def zero_input(weight: str) -> str:
    return f"{weight}__kernel_zero"


def kernel_node(node: onnx.NodeProto, layer: Layer) -> onnx.NodeProto:
    """``node`` (the layer's LSTM) as the kernel, reading its weights' fed codes and
    parameters; the same inputs and attributes as the export writes."""
    w, r = (x.name for x in layer.weights)
    inputs = list(node.input) + [""] * (_LSTM_INPUTS - len(node.input))
    inputs[1], inputs[2] = codes_input(w), codes_input(r)
    params = [scale_input(w), zero_input(w), scale_input(r), zero_input(r)]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "layout"}
    return helper.make_node(
        OP, inputs[:_LSTM_INPUTS] + params, list(node.output), name=node.name, domain=DOMAIN,
        **attrs,
    )  # fmt: skip


def kernel_inputs(layer: Layer) -> list[onnx.ValueInfoProto]:
    """The graph inputs :func:`kernel_node` reads besides the layer's activations."""
    out = []
    for w in layer.weights:
        out += [
            value_info(codes_input(w.name), np.int8, None),
            value_info(scale_input(w.name), np.float32, None),
            value_info(zero_input(w.name), np.int8, None),
        ]
    return out


def add_kernels(graph: onnx.GraphProto, layers: list[Layer]) -> list[onnx.ValueInfoProto]:
    """Replace each of ``layers``' LSTM node by the kernel, in place; returns the new inputs."""
    by_output = {la.outputs[0]: la for la in layers}
    inputs: list[onnx.ValueInfoProto] = []
    for i, node in enumerate(graph.node):
        layer = by_output.get(node.output[0]) if node.output else None
        if layer is not None and node.op_type == "LSTM":
            graph.node[i].CopyFrom(kernel_node(node, layer))
            inputs += kernel_inputs(layer)
    return inputs


def with_domain(model: onnx.ModelProto) -> None:
    """Declare the kernel's operator set on ``model``, in place."""
    if all(o.domain != DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(DOMAIN, 1))


def feeds(q: QuantizedWeight) -> dict[str, np.ndarray]:
    """What the kernel reads for one weight ``[D, 4H, K]`` in its int8 format: the codes
    transposed to ``[D, K, 4H]``, the scales in the kernel's layout and zero zero points
    (as bitlens.core.export.dynamic_lstm stores them)."""
    codes = np.asarray(q.q.codes)
    directions, rows = codes.shape[0], codes.shape[1]
    assert q.q.scale is not None
    scale = kernel_params(q.q.scale, directions, rows)
    return {
        codes_input(q.name): np.ascontiguousarray(codes.transpose(0, 2, 1)),
        scale_input(q.name): scale,
        zero_input(q.name): np.zeros(scale.shape, np.int8),
    }
