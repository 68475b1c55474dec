"""Shape inference on a model's skeleton.

``onnx.shape_inference.infer_shapes`` serializes the whole model, which
doubles memory and fails outright past protobuf's 2 GB limit. It needs the
*values* of only small tensors (Reshape shapes, Resize scales), so it runs on
a copy whose large float tensors keep their name, type and dims but no data.
Failures are not fatal: a model ONNX cannot infer (custom ops, unknown
opsets) keeps the types its file declares.

Tree ensembles (``ai.onnx.ml``) hold their trees in list attributes, one entry per node
or leaf: luscinia 1.0.0's LightGBM stress model has 4.8 million nodes, 195 MB, and copying
them into the skeleton and through inference's serialization raised its load's peak from
1.4 GB to 3.2 GB. ONNX's inference of those ops reads only whether ``nodes_values``,
``class_weights``, ``target_weights``... are set, the class labels and ``n_targets`` (the
TreeEnsembleClassifier and TreeEnsembleRegressor schemas in onnx/defs/traditionalml/ of
https://github.com/onnx/onnx), so the skeleton keeps one entry of each per-node list.
"""

from __future__ import annotations

import onnx

from bitlens.core.model.tensors import FLOAT_ELEM_TYPES, value_info_to_tensor
from bitlens.core.model.types import TensorInfo

# Float tensors at least this many elements lose their data in the skeleton.
STRIP_MIN_ELEMENTS = 1024
# ai.onnx.ml ops whose per-node/per-leaf lists inference never reads past their presence
_TREE_OPS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor"})
_TREE_LISTS = ("nodes_", "class_", "target_")  # not "classlabels_": they size the output
_LISTS = (onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS, onnx.AttributeProto.STRINGS)


def infer_value_info(proto: onnx.ModelProto) -> dict[str, TensorInfo]:
    """Name -> TensorInfo of every value ONNX can type: inputs, outputs, intermediates."""
    inferred = proto
    try:
        inferred = onnx.shape_inference.infer_shapes(
            skeleton(proto), check_type=False, strict_mode=False
        )
    except Exception:  # any inference failure leaves the declared types only
        inferred = proto
    out: dict[str, TensorInfo] = {}
    collect_value_info(inferred.graph, out)
    return out


def collect_value_info(graph: onnx.GraphProto, out: dict[str, TensorInfo]) -> None:
    """Add the typed values of ``graph`` and its subgraphs to ``out`` (first one wins)."""
    for vi in (*graph.input, *graph.output, *graph.value_info):
        if vi.name and vi.name not in out:
            out[vi.name] = value_info_to_tensor(vi)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                collect_value_info(attr.g, out)
            for g in attr.graphs:
                collect_value_info(g, out)


def skeleton(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` whose large float tensors carry no data."""
    sk = onnx.ModelProto(
        ir_version=proto.ir_version,
        producer_name=proto.producer_name,
        producer_version=proto.producer_version,
        domain=proto.domain,
        model_version=proto.model_version,
    )
    sk.opset_import.extend(proto.opset_import)
    sk.functions.extend(proto.functions)
    sk.graph.CopyFrom(_strip_graph(proto.graph))
    return sk


def _big_float(t: onnx.TensorProto) -> bool:
    n = 1
    for d in t.dims:
        n *= int(d)
    return t.data_type in FLOAT_ELEM_TYPES and n >= STRIP_MIN_ELEMENTS


def _strip_tensor(t: onnx.TensorProto) -> onnx.TensorProto:
    if not _big_float(t):
        return t
    return onnx.TensorProto(name=t.name, dims=t.dims, data_type=t.data_type)


def _strip_graph(g: onnx.GraphProto) -> onnx.GraphProto:
    new = onnx.GraphProto(name=g.name)
    new.input.extend(g.input)
    new.output.extend(g.output)
    new.value_info.extend(g.value_info)
    new.sparse_initializer.extend(g.sparse_initializer)
    new.initializer.extend(_strip_tensor(t) for t in g.initializer)
    new.node.extend(_strip_node(n) for n in g.node)
    return new


def _tree_list(node: onnx.NodeProto, a: onnx.AttributeProto) -> bool:
    """A long per-node list of a tree ensemble (see the module's docstring)."""
    return (
        node.op_type in _TREE_OPS
        and node.domain == "ai.onnx.ml"
        and a.type in _LISTS
        and a.name.startswith(_TREE_LISTS)
        and len(a.floats) + len(a.ints) + len(a.strings) >= STRIP_MIN_ELEMENTS
    )


def _strip_node(node: onnx.NodeProto) -> onnx.NodeProto:
    heavy = any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        or (a.type == onnx.AttributeProto.TENSOR and _big_float(a.t))
        or _tree_list(node, a)
        for a in node.attribute
    )
    if not heavy:
        return node
    new = onnx.NodeProto(
        name=node.name,
        op_type=node.op_type,
        domain=node.domain,
        input=node.input,
        output=node.output,
    )
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            a = onnx.AttributeProto(name=attr.name, type=attr.type)
            a.g.CopyFrom(_strip_graph(attr.g))
        elif attr.type == onnx.AttributeProto.GRAPHS:
            a = onnx.AttributeProto(name=attr.name, type=attr.type)
            a.graphs.extend(_strip_graph(g) for g in attr.graphs)
        elif attr.type == onnx.AttributeProto.TENSOR and _big_float(attr.t):
            a = onnx.AttributeProto(name=attr.name, type=attr.type)
            a.t.CopyFrom(_strip_tensor(attr.t))
        elif _tree_list(node, attr):  # its first entry: set, as inference checks
            a = onnx.AttributeProto(name=attr.name, type=attr.type)
            a.floats.extend(attr.floats[:1])
            a.ints.extend(attr.ints[:1])
            a.strings.extend(attr.strings[:1])
        else:
            a = attr
        new.attribute.append(a)
    return new
