"""Small ONNX graph helpers shared by the engine and the exporter."""

from __future__ import annotations

from collections.abc import Collection, Iterator

import numpy as np
import onnx
from onnx import GraphProto, NodeProto, TensorProto, helper

from bitlens.core.errors import EngineError
from bitlens.core.model.graph import outer_names, subgraphs


def find_graph(graph: GraphProto, path: str) -> GraphProto:
    """The (sub)graph at ``path`` ("" is ``graph``; "If_0/then_branch/Loop_2/body" nests)."""
    if not path:
        return graph
    # Node names may contain "/" themselves (PyTorch's "/decoder/If"); the walk names a
    # subgraph "<unique node name>/<attribute>", so try that reading first.
    owner, _, attr_name = path.rpartition("/")
    for node in iter_nodes(graph):
        if node.name == owner:
            for attr in node.attribute:
                if attr.name == attr_name and attr.type == onnx.AttributeProto.GRAPH:
                    return attr.g
    parts = path.split("/")
    if len(parts) % 2:
        raise EngineError(f"malformed subgraph path {path!r}")
    g = graph
    for node_name, attr_name in zip(parts[::2], parts[1::2], strict=True):
        g = _subgraph(g, node_name, attr_name)
    return g


def _subgraph(graph: GraphProto, node_name: str, attr_name: str) -> GraphProto:
    for i, node in enumerate(graph.node):
        if node.name == node_name or (not node.name and f"{node.op_type}_{i}" == node_name):
            for attr in node.attribute:
                if attr.name == attr_name and attr.type == onnx.AttributeProto.GRAPH:
                    return attr.g
    # Generated names count nodes across the whole model; fall back to a search.
    for node in iter_nodes(graph):
        if node.name == node_name:
            for attr in node.attribute:
                if attr.name == attr_name and attr.type == onnx.AttributeProto.GRAPH:
                    return attr.g
    raise EngineError(f"subgraph {node_name}/{attr_name} not found")


def iter_nodes(graph: GraphProto) -> Iterator[NodeProto]:
    """Every node of ``graph`` and, recursively, of its subgraphs."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_nodes(g)


def node_producing(graph: GraphProto, tensor: str) -> tuple[int, NodeProto]:
    for i, node in enumerate(graph.node):
        if tensor in node.output:
            return i, node
    raise EngineError(f"no node produces {tensor!r}")


def producers(graph: GraphProto) -> dict[str, NodeProto]:
    """Each tensor of ``graph`` and the node producing it (the first, as node_producing
    finds it): one pass over the nodes for callers that look up many tensors."""
    found: dict[str, NodeProto] = {}
    for node in graph.node:
        for out in node.output:
            found.setdefault(out, node)
    return found


def tensor_type(dtype: np.dtype | str) -> int:
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def value_info(name: str, dtype: np.dtype | str, shape: tuple | None) -> onnx.ValueInfoProto:
    """A ValueInfo; ``shape`` entries may be ints, names or None (unknown)."""
    if shape is None:
        return helper.make_tensor_value_info(name, tensor_type(dtype), None)
    dims = [d if isinstance(d, int | str) else None for d in shape]
    return helper.make_tensor_value_info(name, tensor_type(dtype), dims)


def remove_definition(g: GraphProto, name: str, from_constant_node: bool) -> bool:
    """Drop a constant's definition from ``g``: its initializer (and the input entry old IR
    versions add for it), or the Constant node producing it. False if it was not there."""
    if from_constant_node:
        return bool(remove_definitions(g, set(), {name}))
    return bool(remove_definitions(g, {name}, set()))


def drop_inputs(g: GraphProto, names: Collection[str]) -> None:
    """Drop the graph inputs named in ``names``: the entries old IR versions add for an
    initializer, once the initializer is gone."""
    for i in reversed([i for i, v in enumerate(g.input) if v.name in names]):
        del g.input[i]


def initializer_named(g: GraphProto, name: str) -> TensorProto | None:
    """``g``'s first initializer named ``name``, or None."""
    return next((t for t in g.initializer if t.name == name), None)


def remove_definitions(g: GraphProto, initializers: set[str], constant_nodes: set[str]) -> set[str]:
    """Drop many constants' definitions from ``g`` in one pass over each list; returns the
    names found.

    Elements are deleted by index (highest first): rebuilding a repeated field instead
    copies every remaining message, weights included, so removing the weights one by one
    that way grew quadratically with the number of weights and kept the copies alive in
    the protobuf arena (3 GB for a 54 MB model).
    """
    found: set[str] = set()
    if initializers:
        drop = [i for i, t in enumerate(g.initializer) if t.name in initializers]
        found.update(g.initializer[i].name for i in drop)
        for i in reversed(drop):
            del g.initializer[i]
        drop_inputs(g, found)
    if constant_nodes:
        drop = [
            i
            for i, n in enumerate(g.node)
            if n.op_type == "Constant" and any(o in constant_nodes for o in n.output)
        ]
        for i in drop:
            found.update(o for o in g.node[i].output if o in constant_nodes)
        for i in reversed(drop):
            del g.node[i]
    return found


def node_reads(node: NodeProto) -> list[str]:
    """The names a node reads: its inputs, and what its subgraphs read from outside them."""
    names = [n for n in node.input if n]
    for _, g in subgraphs(node):
        names.extend(sorted(outer_names(g)))
    return names
