"""Writing the ``HardSwish`` op as ``x * Clip(x + 3, 0, 6) / 6`` (Paddle2ONNX's form).

ONNX Runtime 1.31 fuses nothing quantized around the ``HardSwish`` op: it splits it into a
float HardSigmoid and Mul, so a W8A8 export ran ``DequantizeLinear -> HardSigmoid, Mul ->
QuantizeLinear`` in float after every conv, while the float model's session fuses the
HardSwish into its convolutions. trueocr's text detector (31 HardSwish, PyTorch opset 17)
ran its W8A8 export at 1.6-1.9x the float model's time (one thread, 96x128 and 480x640
pages). Written in Paddle2ONNX's form, the ``ort-cpu`` target's HardSwish rule applies
(bitlens.core.targets: the Clip's output quantized, the 3 an exact DequantizeLinear, the
``/ 6`` a rescaled DequantizeLinear), so each HardSwish runs as QLinearAdd and QLinearMul
and nothing of it in float: the same detector's W8A8 export ran at 0.65x float at 480x640.

The rewrite is in the loader's in-memory copy (the file is unchanged), like the
BatchNormalization fold (bitlens.core.model.bn_fold): the engine, the export and the
fidelity check all see the four ops. In float they compute the ONNX definition
``x * max(0, min(1, x / 6 + 0.5))`` up to float rounding. Only main-graph HardSwish nodes
whose input is known to be float32 (declared, or a Conv/Gemm/MatMul output with float32
weights) are rewritten: the constants are float32.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.model.graph import CONSTANT_DOMAINS, is_constant_node

_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# The scalar constants' names: the export finds the form by them where it stays float
# (bitlens.core.export.hardswish_float).
CONST_PREFIX = "hardswish_"


def hardswish_note(count: int) -> str | None:
    """One line for the user, or None when nothing was rewritten."""
    if not count:
        return None
    return (
        f"{count} HardSwish op(s) written as x * Clip(x + 3, 0, 6) / 6 (in memory; the file is "
        "unchanged), so ONNX Runtime can run them on integer kernels: float outputs differ "
        "from the file's by float rounding only"
    )


def decompose_hardswish(model: onnx.ModelProto) -> int:
    """Rewrite every float32 main-graph HardSwish as Add, Clip, Mul and Div (in place); the
    Div writes the HardSwish's output name. Returns how many were rewritten."""
    graph = model.graph
    # by position: a node's Python wrapper (and so its id()) need not outlive the loop
    todo = {
        i for i, n in enumerate(graph.node)
        if n.op_type == "HardSwish" and n.domain in CONSTANT_DOMAINS and _float32(n.input[0], graph)
    }  # fmt: skip
    if not todo:
        return 0
    used = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    used |= {i.name for i in graph.input} | {n.name for n in graph.node}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        return name

    consts = {v: fresh(f"{CONST_PREFIX}{v}") for v in (0, 3, 6)}
    graph.initializer.extend(
        numpy_helper.from_array(np.asarray(v, np.float32), name) for v, name in consts.items()
    )
    mk = onnx.helper.make_node
    nodes: list[onnx.NodeProto] = []
    for i, node in enumerate(graph.node):
        if i not in todo:
            nodes.append(node)
            continue
        x, base = node.input[0], node.name or node.output[0]
        p, r, m = (fresh(f"{base}/{part}") for part in ("plus3", "relu6", "times"))
        nodes += [
            mk("Add", [x, consts[3]], [p], name=fresh(f"{base}/Add")),
            mk("Clip", [p, consts[0], consts[6]], [r], name=fresh(f"{base}/Clip")),
            mk("Mul", [x, r], [m], name=fresh(f"{base}/Mul")),
            mk("Div", [m, consts[6]], [node.output[0]], name=fresh(f"{base}/Div")),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(todo)


def _float32(name: str, graph: onnx.GraphProto) -> bool:
    for v in (*graph.input, *graph.value_info, *graph.output):
        if v.name == name and v.type.HasField("tensor_type"):
            return v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    producer = next((n for n in graph.node if name in n.output), None)
    if producer is None or producer.op_type not in _LAYERS or len(producer.input) < 2:
        return False
    w = next((t for t in graph.initializer if t.name == producer.input[1]), None)
    if w is None:  # a weight in a Constant node
        const = next(
            (n for n in graph.node if is_constant_node(n) and producer.input[1] in n.output), None
        )
        w = next((a.t for a in const.attribute if a.name == "value"), None) if const else None
    return w is not None and w.data_type == onnx.TensorProto.FLOAT
