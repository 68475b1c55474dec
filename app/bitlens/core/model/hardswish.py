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

Paddle2ONNX at opset 11 (no HardSwish op) writes the same function as ``HardSigmoid(x)``
(alpha 1/6, beta 0.5) and ``Mul(x, .)``: PP-OCRv5's mobile detector has 24 such pairs, which
its W8A8 export also ran in float between the quantizers (``DequantizeLinear -> HardSigmoid,
Mul -> QuantizeLinear``). A pair whose HardSigmoid only that Mul reads, with the Mul's other
input the HardSigmoid's own, is written as ``x * Clip(x + b/a, 0, 1/a) / (1/a)``: in exact
arithmetic ``a * Clip(x + b/a, 0, 1/a) = Clip(a x + b, 0, 1)``, the ONNX definition, for any
``a > 0``. Only where ``1/a`` and ``b/a`` in float32 give back ``a`` and ``b`` exactly (0.2 and
1/6 with 0.5 do), so the export can write the pair back as it was where it stays float. A
HardSigmoid gating another tensor (a squeeze-and-excitation block's ``x * hs(y)``) is left.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.model.graph import CONSTANT_DOMAINS, is_constant_node

_LAYERS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Ops whose output has the type of each of their (non-empty) inputs: ONNX's one type T.
_SAME_TYPE = frozenset({"Identity", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid",
                        "HardSigmoid", "LeakyRelu"})  # fmt: skip
# The scalar constants' names: the export finds the form by them where it stays float
# (bitlens.core.export.hardswish_float).
CONST_PREFIX = "hardswish_"
# Those of a HardSigmoid and Mul pair's form: written back as the pair, not as HardSwish.
PAIR_PREFIX = f"{CONST_PREFIX}hardsigmoid"


def hardswish_note(count: int) -> str | None:
    """One line for the user, or None when nothing was rewritten."""
    return _note(count, "HardSwish op(s) written as x * Clip(x + 3, 0, 6) / 6")


def pair_note(count: int) -> str | None:
    """One line for the HardSigmoid and Mul pairs rewritten, or None."""
    return _note(count, "x * HardSigmoid(x) pair(s) written as x * Clip(x + b/a, 0, 1/a) / (1/a)")


def _note(count: int, what: str) -> str | None:
    if not count:
        return None
    return (
        f"{count} {what} (in memory; the file is unchanged), so ONNX Runtime can run them on "
        "integer kernels: float outputs differ from the file's by float rounding only"
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
    fresh = _namer(graph)

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


def pair_constants(alpha: float, beta: float) -> tuple[np.float32, np.float32] | None:
    """(b/a, 1/a) in float32 for HardSigmoid(alpha, beta), or None where ``a`` is not positive
    or the two do not give back ``a`` and ``b`` exactly (1 / (1/a) and (b/a) / (1/a))."""
    a, b = np.float32(alpha), np.float32(beta)
    if not (np.isfinite(a) and np.isfinite(b) and a > 0):
        return None
    with np.errstate(over="ignore"):
        hi = np.float32(1) / a
        shift = b / a
    if not (np.isfinite(hi) and np.isfinite(shift)):
        return None
    return (shift, hi) if np.float32(1) / hi == a and shift / hi == b else None


def decompose_hardsigmoid_mul(model: onnx.ModelProto) -> int:
    """Rewrite every float32 main-graph ``Mul(x, HardSigmoid(x))`` (the HardSigmoid read by
    that Mul alone) as Add, Clip, Mul and Div (in place); the Div writes the Mul's output
    name. Returns how many pairs were rewritten."""
    graph = model.graph
    readers: dict[str, list[int]] = {}
    for i, n in enumerate(graph.node):
        for name in n.input:
            readers.setdefault(name, []).append(i)
    outputs = {o.name for o in graph.output}
    pairs: dict[int, tuple[int, tuple[np.float32, np.float32]]] = {}  # Mul -> (HardSigmoid, consts)
    for i, n in enumerate(graph.node):
        if n.op_type != "HardSigmoid" or n.domain not in CONSTANT_DOMAINS or not n.output:
            continue
        x, y = n.input[0], n.output[0]
        read = readers.get(y, [])
        if y in outputs or len(read) != 1:
            continue
        mul = graph.node[read[0]]
        if mul.op_type != "Mul" or sorted(mul.input) != sorted([x, y]) or x == y:
            continue
        attrs = {a.name: a.f for a in n.attribute}
        found = pair_constants(attrs.get("alpha", 0.2), attrs.get("beta", 0.5))
        if found is not None and _float32(x, graph):
            pairs[read[0]] = (i, found)
    if not pairs:
        return 0
    fresh = _namer(graph)

    consts: dict[float, str] = {}

    def const(value: np.float32) -> str:
        if float(value) not in consts:
            consts[float(value)] = fresh(f"{PAIR_PREFIX}_{float(value):g}")
            graph.initializer.append(numpy_helper.from_array(np.asarray(value), consts[float(value)]))
        return consts[float(value)]

    zero = const(np.float32(0))
    dropped = {h for h, _ in pairs.values()}
    mk = onnx.helper.make_node
    nodes: list[onnx.NodeProto] = []
    for i, node in enumerate(graph.node):
        if i in dropped:
            continue
        if i not in pairs:
            nodes.append(node)
            continue
        hs = graph.node[pairs[i][0]]
        shift, hi = pairs[i][1]
        x, base = hs.input[0], hs.name or hs.output[0]
        p, r, m = (fresh(f"{base}/{part}") for part in ("shifted", "clipped", "times"))
        nodes += [
            mk("Add", [x, const(shift)], [p], name=fresh(f"{base}/Add")),
            mk("Clip", [p, zero, const(hi)], [r], name=fresh(f"{base}/Clip")),
            mk("Mul", [x, r], [m], name=node.name or fresh(f"{base}/Mul")),
            mk("Div", [m, const(hi)], [node.output[0]], name=fresh(f"{base}/Div")),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(pairs)


def _namer(graph: onnx.GraphProto) -> Callable[[str], str]:
    """A function giving names no tensor, node or initializer of ``graph`` has (nor an earlier
    name it gave)."""
    used = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    used |= {i.name for i in graph.input} | {n.name for n in graph.node}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        return name

    return fresh


def _float32(name: str, graph: onnx.GraphProto, depth: int = 8) -> bool:
    """``name`` is known to be float32: declared so, a float32 initializer, the output of a
    layer with float32 weights, or of an op whose output has its inputs' type (Identity, an
    elementwise op: PP-OCRv5's learnable affine blocks, ``w0 * conv + w1`` then Identity,
    come between its convs and their HardSigmoids) with such an input, up to ``depth`` ops up."""
    for v in (*graph.input, *graph.value_info, *graph.output):
        if v.name == name and v.type.HasField("tensor_type"):
            return v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    init = next((t for t in graph.initializer if t.name == name), None)
    if init is not None:
        return init.data_type == onnx.TensorProto.FLOAT
    producer = next((n for n in graph.node if name in n.output), None)
    if producer is None or depth <= 0:
        return False
    if producer.op_type in _SAME_TYPE and producer.domain in CONSTANT_DOMAINS:
        return any(_float32(i, graph, depth - 1) for i in producer.input if i)
    if producer.op_type not in _LAYERS or len(producer.input) < 2:
        return False
    w = next((t for t in graph.initializer if t.name == producer.input[1]), None)
    if w is None:  # a weight in a Constant node
        const = next(
            (n for n in graph.node if is_constant_node(n) and producer.input[1] in n.output), None
        )
        w = next((a.t for a in const.attribute if a.name == "value"), None) if const else None
    return w is not None and w.data_type == onnx.TensorProto.FLOAT
