"""Removing the main graph's Identity nodes in memory, as ONNX Runtime does in every session.

Paddle2ONNX writes an ``Identity`` after most Adds and Muls (tinyocr's PP-OCRv6 detector: 147,
PP-OCRv5's detector and recognizer: 191-192, tests/real/wheels.py). ONNX Runtime removes them
when it builds a session (``EliminateIdentity``, a level-1 rewrite that runs before the QDQ
fusions: https://github.com/microsoft/onnxruntime/blob/main/onnxruntime/core/optimizer/identity_elimination.cc),
so what it fuses is the graph without them. The deployment rules that place quantizers
(bitlens.core.targets) and decide integer kernels (bitlens.core.export.kernels) read
single-consumer chains such as ``Conv -> Relu -> QuantizeLinear``; an Identity in such a chain
(``Conv -> Identity -> Relu`` once the bias Add is folded) hid the Relu, so the conv output
was quantized before it and the next layer's input again after it: ONNX Runtime ran a
``DequantizeLinear -> QuantizeLinear`` requantization between 16 pairs of QLinearConvs of the
PP-OCRv6 detector, and the W8A8 export rounded those activations twice.

An Identity stays where its output is a graph output or is read inside a subgraph (an If or
Loop body names outer values by name), and where it copies an initializer, a graph input or a
Constant (a weight shared through Identity nodes stays as the file shares it: captcha-crnn's
LSTMCell weights). Elsewhere its readers read its input: values are unchanged.

The loader drops them after its folds (bn_fold, conv_add_fold, hardswish), which an Identity
still stops where it stood between the two ops: dropped first, PP-OCRv5's detector had its
``ConvTranspose -> Identity -> Add`` bias folded into the ConvTranspose, whose unfolded
BatchNormalization and Relu then ran 3 LSB apart in ONNX Runtime's optimized session and the
output 0.16 of its range off the simulation (the fidelity check failed; not investigated
further).
"""

from __future__ import annotations

import onnx

from bitlens.core.model.graph import CONSTANT_DOMAINS, is_constant_node, outer_names, subgraphs
from bitlens.core.model.repeated import remove_where


def drop_identities(model: onnx.ModelProto) -> int:
    """Remove the main graph's removable Identity nodes (in place; only for a model the
    caller owns, the loader's in-memory copy). Returns how many were removed."""
    graph = model.graph
    if not any(node.op_type == "Identity" for node in graph.node):
        return 0  # the sets below cost a pass over every node and its attributes
    kept = {o.name for o in graph.output}
    for node in graph.node:
        for _label, sub in subgraphs(node):
            kept |= outer_names(sub)
    computed = {o for n in graph.node if not is_constant_node(n) for o in n.output}
    source: dict[str, str] = {}  # an Identity's output -> the tensor it copies
    for node in graph.node:
        if (
            node.op_type == "Identity"
            and node.domain in CONSTANT_DOMAINS
            and len(node.input) == 1
            and len(node.output) == 1
            and node.input[0] in computed
            and node.output[0] not in kept
        ):
            source[node.output[0]] = node.input[0]
    if not source:
        return 0

    def root(name: str) -> str:
        while name in source:  # Identity -> Identity chains
            name = source[name]
        return name

    remove_where(graph.node, lambda n: n.op_type == "Identity" and n.output[0] in source)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in source:
                node.input[i] = root(name)
    remove_where(graph.value_info, lambda v: v.name in source)
    return len(source)
