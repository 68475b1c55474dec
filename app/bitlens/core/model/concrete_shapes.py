"""Concrete shapes at fixed input sizes, through the small shape arithmetic exporters emit.

ONNX shape inference types a value only when the tensors that size it are constants it
can read. Exporters often compute those sizes: tf2onnx and the PyTorch exporter build a
``Pad``'s amounts through ``ConstantOfShape``/``Concat``/``Reshape``/``Slice``/``Cast``
chains of small constants, and ``Reshape`` targets through ``Shape``/``Gather``/``Concat``
of the activations. Inference then leaves every later layer unsized (Yahoo's open_nsfw
ResNet-50: no Conv typed at all). With the model inputs at concrete sizes, every such
value is a constant: this module evaluates them (``onnx``'s reference evaluator,
https://onnx.ai/onnx/api/reference.html, one node at a time, small values only), puts
them in the skeleton as initializers and infers again, until nothing new is learnt.
What ONNX Runtime does when it builds a session (constant folding, shape propagation),
done on the skeleton only: the float weights are never read, the caller's model never
changed.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.model.graph import CONSTANT_DOMAINS, subgraphs
from bitlens.core.model.repeated import remove_where
from bitlens.core.model.shapes import STRIP_MIN_ELEMENTS, collect_value_info
from bitlens.core.model.tensors import FLOAT_ELEM_TYPES
from bitlens.core.model.types import TensorInfo

# Values up to this many elements are computed: shape vectors, pad amounts, scales.
MAX_ELEMENTS = 1 << 16
MAX_ROUNDS = 8  # each round is one shape inference; chains of Shape->Reshape need a few

SKIPPED = frozenset(
    {
        "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
        "Multinomial", "Bernoulli", "If", "Loop", "Scan",
    }
)  # fmt: skip


def concrete_value_info(sk: onnx.ModelProto) -> dict[str, TensorInfo]:
    """Name -> TensorInfo of every value of ``sk`` (a skeleton the caller owns, its
    inputs at concrete sizes), with computed shape values folded in. ``sk`` is changed."""
    out = _infer(sk)
    for _ in range(MAX_ROUNDS):
        if not _fold_round(sk, out):
            break
        out = _infer(sk)
    return out


def _infer(sk: onnx.ModelProto) -> dict[str, TensorInfo]:
    inferred = sk
    try:
        inferred = onnx.shape_inference.infer_shapes(
            sk, check_type=False, strict_mode=False, data_prop=True
        )
    except Exception:  # any inference failure leaves the declared types only
        inferred = sk
    out: dict[str, TensorInfo] = {}
    collect_value_info(inferred.graph, out)
    return out


def static_shape(t: TensorInfo | None) -> tuple[int, ...] | None:
    """``t``'s shape if every dimension is a size; None if any is named, unknown or
    negative (ONNX inference writes a negative size where an input is shorter than a
    kernel: openWakeWord's melspectrogram at 32 samples against its 512-tap conv)."""
    if t is None or t.shape is None or not all(isinstance(d, int) for d in t.shape):
        return None
    if any(int(d) < 0 for d in t.shape):  # type: ignore[arg-type]
        return None
    return tuple(int(d) for d in t.shape)  # type: ignore[arg-type]


def _small_initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    out = {}
    for t in graph.initializer:
        n = math.prod(t.dims)
        if n > MAX_ELEMENTS or (t.data_type in FLOAT_ELEM_TYPES and n >= STRIP_MIN_ELEMENTS):
            continue  # large float tensors have no data in the skeleton
        if t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        try:
            out[t.name] = numpy_helper.to_array(t)
        except Exception:  # an odd element type: not a shape value
            continue
    return out


def _fold_round(sk: onnx.ModelProto, known: dict[str, TensorInfo]) -> bool:
    """Evaluate every node of the main graph whose value is now computable; put the
    values in as initializers. True if anything was folded."""
    graph = sk.graph
    values = _small_initializers(graph)
    opsets = list(sk.opset_import)
    folded: list[onnx.NodeProto] = []
    for node in graph.node:
        got = _value_of(node, values, known, opsets, sk.ir_version)
        if got is None:
            continue
        values.update(zip([o for o in node.output if o], got, strict=True))
        folded.append(node)
    if not folded:
        return False
    done = {id(n) for n in folded}
    remove_where(graph.node, lambda n: id(n) in done)
    graph.initializer.extend(
        numpy_helper.from_array(np.asarray(values[o]), o) for n in folded for o in n.output if o
    )
    return True


def _value_of(
    node: onnx.NodeProto,
    values: dict[str, np.ndarray],
    known: dict[str, TensorInfo],
    opsets: list[onnx.OperatorSetIdProto],
    ir_version: int,
) -> list[np.ndarray] | None:
    """The outputs of ``node`` if they are small and computable now, else None."""
    if node.domain not in CONSTANT_DOMAINS or node.op_type in SKIPPED:
        return None
    if any(True for _ in subgraphs(node)) or not node.output:
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type in ("Shape", "Size"):
        shape = static_shape(known.get(node.input[0]))
        if shape is None:
            return None
        if node.op_type == "Size":
            return [np.array(math.prod(shape), np.int64)]
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return [np.array(shape[start:end], np.int64)]
    if not all(name in values for name in node.input if name):
        return None
    grows = node.op_type in ("ConstantOfShape", "Expand", "Tile", "Range")
    if grows and _grown_size(node, values) > MAX_ELEMENTS:
        return None
    try:
        outs = _evaluate(node, values, opsets, ir_version)
    except Exception:  # the reference evaluator raises many types: leave the node
        return None
    if any(np.asarray(v).size > MAX_ELEMENTS for v in outs):
        return None
    return [np.asarray(v) for v in outs]


def _grown_size(node: onnx.NodeProto, values: dict[str, np.ndarray]) -> int:
    """Elements an op that can grow a few constants into many would output."""
    a = [values[i] for i in node.input if i]
    try:
        if node.op_type == "ConstantOfShape":
            return math.prod(int(d) for d in a[0].ravel()) if a else 1
        if node.op_type == "Expand":
            return math.prod(np.broadcast_shapes(a[0].shape, tuple(int(d) for d in a[1])))
        if node.op_type == "Tile":
            return a[0].size * math.prod(int(r) for r in a[1].ravel())
        start, limit, delta = (float(np.asarray(v).ravel()[0]) for v in a[:3])
        return int(max(math.ceil((limit - start) / delta), 0)) if delta else MAX_ELEMENTS + 1
    except (ValueError, TypeError, IndexError, OverflowError):
        return MAX_ELEMENTS + 1


def _evaluate(
    node: onnx.NodeProto,
    values: dict[str, np.ndarray],
    opsets: list[onnx.OperatorSetIdProto],
    ir_version: int,
) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    names = list(dict.fromkeys(i for i in node.input if i))
    inits = [numpy_helper.from_array(np.asarray(values[n]), n) for n in names]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.output if o]
    g = helper.make_graph([node], "shape_value", [], outputs, inits)
    m = helper.make_model(g, opset_imports=opsets)
    m.ir_version = ir_version
    return list(ReferenceEvaluator(m).run(None, {}))
