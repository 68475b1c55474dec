"""Shape nodes read a quantized tensor's codes rather than its dequantized values.

Where the export quantizes a tensor that a ``Shape`` node also reads, the Shape read the
DequantizeLinear's output, and ONNX Runtime, which fuses the other readers' DequantizeLinear
into their integer kernels, kept a DequantizeLinear of the whole tensor for the Shape alone
(it gives each reader its own copy: ``EnsureUniqueDQForNodeUnit``,
onnxruntime/core/optimizer/qdq_transformer/ensure_unique_dq_for_node_unit.cc). trueocr's
detector (tests/real/wheels.py) ran 9 of them: 0.31 of its 13.9 ms of W8A8 node time at
512x384 (ONNX Runtime 1.31.1's profiler, one thread). A DequantizeLinear's output has its
input's shape, so the Shape reads the codes and gives the same values.
"""

from __future__ import annotations

import onnx

from bitlens.core.model.graph import CONSTANT_DOMAINS


def shapes_read_codes(graph: onnx.GraphProto) -> int:
    """Point every main-graph Shape that reads a DequantizeLinear's output at its input
    (in place); returns how many."""
    producer = {o: n for n in graph.node for o in n.output}
    moved = 0
    for node in graph.node:
        if node.op_type != "Shape" or node.domain not in CONSTANT_DOMAINS or not node.input:
            continue
        src = producer.get(node.input[0])
        if src is not None and src.op_type == "DequantizeLinear" and src.domain in CONSTANT_DOMAINS:
            node.input[0] = src.input[0]
            moved += 1
    return moved
