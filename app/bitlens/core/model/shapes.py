"""Shape inference on a model's skeleton.

``onnx.shape_inference.infer_shapes`` serializes the whole model, which
doubles memory and fails outright past protobuf's 2 GB limit. It needs the
*values* of only small tensors (Reshape shapes, Resize scales), so it runs on
a copy whose large float tensors keep their name, type and dims but no data.
Failures are not fatal: a model ONNX cannot infer (custom ops, unknown
opsets) keeps the types its file declares.
"""

from __future__ import annotations

import onnx

from bitlens.core.model.tensors import FLOAT_ELEM_TYPES, value_info_to_tensor
from bitlens.core.model.types import TensorInfo

# Float tensors at least this many elements lose their data in the skeleton.
STRIP_MIN_ELEMENTS = 1024


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


def _strip_node(node: onnx.NodeProto) -> onnx.NodeProto:
    heavy = any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        or (a.type == onnx.AttributeProto.TENSOR and _big_float(a.t))
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
        else:
            a = attr
        new.attribute.append(a)
    return new
