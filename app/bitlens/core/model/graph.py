"""Walking an ONNX graph: topological order, unique node names, scopes.

Every consumer of a model (inventory, engine, exporter) must agree on node
order and names, so both are computed here once. :func:`walk` visits every
node, subgraph nodes (If/Loop/Scan bodies) right after their parent, and
gives each one a unique name: the file's own name when it has a unique one,
else ``<OpType>_<index>`` with ``index`` the node's position in that order.
:func:`normalize` writes that order and those names into a model the loader
owns, so that names in :class:`~bitlens.core.model.types.ModelInfo` are the
names in ``LoadedModel.proto``.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

import onnx

from bitlens.core.model.tensors import constant_meta
from bitlens.core.model.types import Storage

CONSTANT_DOMAINS = frozenset({"", "ai.onnx"})


class GraphOrderError(ValueError):
    """The graph has a cycle, so no topological order exists."""


@dataclass(frozen=True)
class ConstSource:
    """Where a constant value is defined: an initializer or a Constant node's output."""

    name: str
    graph_path: str
    storage: Storage
    shape: tuple[int, ...]
    elem_type: int
    tensor: onnx.TensorProto | onnx.SparseTensorProto | None = None
    node: onnx.NodeProto | None = None


@dataclass(eq=False)
class Scope:
    """The names one graph defines; subgraphs look outward through ``parent``."""

    graph: onnx.GraphProto
    path: str
    parent: Scope | None
    consts: dict[str, ConstSource] = field(default_factory=dict)
    values: set[str] = field(default_factory=set)  # non-constant names defined here

    def resolve(self, name: str) -> ConstSource | None:
        """The constant ``name`` refers to from this graph, or None if it is computed."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.consts:
                return scope.consts[name]
            if name in scope.values:
                return None
            scope = scope.parent
        return None

    def defines(self, name: str) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.consts or name in scope.values:
                return True
            scope = scope.parent
        return False


@dataclass(frozen=True, eq=False)
class NodeSlot:
    """One node in walk order, with its unique name and the scope it lives in."""

    node: onnx.NodeProto
    name: str
    index: int
    graph_path: str
    scope: Scope
    parent: str | None  # the node owning this node's subgraph, None in the main graph


_GRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_NONE: tuple[tuple[str, onnx.GraphProto], ...] = ()


def subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """(label, graph) for each graph attribute: "then_branch", "body", "graphs/1"..."""
    # Asked of every node by a dozen passes of the load (17k calls on PP-OCRv4 rec's 860
    # nodes): a node without a graph attribute answers at once, without a generator.
    for attr in node.attribute:
        if attr.type in _GRAPH_TYPES:
            return _subgraphs(node)
    return iter(_NONE)


def _subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for i, g in enumerate(attr.graphs):
                yield f"{attr.name}/{i}", g


def is_constant_node(node: onnx.NodeProto) -> bool:
    return node.op_type == "Constant" and node.domain in CONSTANT_DOMAINS and len(node.output) == 1


def outer_names(graph: onnx.GraphProto) -> set[str]:
    """Names a graph reads but does not define (outer-scope references of a subgraph)."""
    defined = {i.name for i in graph.input}
    defined.update(t.name for t in graph.initializer)
    defined.update(s.values.name for s in graph.sparse_initializer)
    used: set[str] = {o.name for o in graph.output}
    for node in graph.node:
        defined.update(node.output)
        used.update(node.input)
        for _, g in subgraphs(node):
            used.update(outer_names(g))
    used.discard("")
    return used - defined


def topo_order(graph: onnx.GraphProto) -> list[int]:
    """Indices of ``graph.node`` in a topological order, as close to file order as possible.

    A node that owns subgraphs depends on the outer values its subgraphs read.
    Raises GraphOrderError naming a node on a cycle.
    """
    nodes = list(graph.node)
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.output:
            if out:
                producer.setdefault(out, i)
    consumers: list[list[int]] = [[] for _ in nodes]
    pending = [0] * len(nodes)
    for i, node in enumerate(nodes):
        needs = set(node.input)
        for _, g in subgraphs(node):
            needs |= outer_names(g)
        for name in needs:
            src = producer.get(name)
            if src is not None and src != i:
                consumers[src].append(i)
                pending[i] += 1
    ready = [i for i, n in enumerate(pending) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in consumers[i]:
            pending[j] -= 1
            if pending[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):
        stuck = next(i for i, n in enumerate(pending) if n > 0)
        label = nodes[stuck].name or f"#{stuck} ({nodes[stuck].op_type})"
        raise GraphOrderError(f"the graph has a cycle through node {label}")
    return order


def _scope(graph: onnx.GraphProto, path: str, parent: Scope | None) -> Scope:
    scope = Scope(graph, path, parent)
    for t in graph.initializer:
        scope.consts[t.name] = ConstSource(
            t.name, path, Storage.INITIALIZER, tuple(int(d) for d in t.dims), t.data_type, tensor=t
        )
    for s in graph.sparse_initializer:
        scope.consts[s.values.name] = ConstSource(
            s.values.name,
            path,
            Storage.INITIALIZER,
            tuple(int(d) for d in s.dims),
            s.values.data_type,
            tensor=s,
        )
    # Old IR lists initializers among the inputs too; those stay constants.
    scope.values.update(i.name for i in graph.input if i.name not in scope.consts)
    for node in graph.node:
        meta = constant_meta(node) if is_constant_node(node) else None
        if meta is not None:
            out = node.output[0]
            scope.consts[out] = ConstSource(
                out, path, Storage.CONSTANT, meta[0], meta[1], node=node
            )
        else:
            scope.values.update(o for o in node.output if o)
    return scope


def _all_names(graph: onnx.GraphProto, into: set[str]) -> set[str]:
    for node in graph.node:
        if node.name:
            into.add(node.name)
        for _, g in subgraphs(node):
            _all_names(g, into)
    return into


def walk(model: onnx.ModelProto) -> list[NodeSlot]:
    """Every node of the model in topological order, subgraph nodes after their parent."""
    return _walk(model, in_order=False)


def _walk(model: onnx.ModelProto, *, in_order: bool) -> list[NodeSlot]:
    """:func:`walk`; ``in_order``: every graph is known to be in the order
    :func:`topo_order` gives (it would return each one's own order)."""
    reserved = _all_names(model.graph, set())
    used: set[str] = set()
    slots: list[NodeSlot] = []

    def unique(node: onnx.NodeProto) -> str:
        if node.name and node.name not in used:
            return node.name
        base = f"{node.op_type or 'Node'}_{len(slots)}"
        name, k = base, 1
        while name in reserved or name in used:
            name, k = f"{base}_{k}", k + 1
        return name

    def visit(
        graph: onnx.GraphProto, path: str, parent_scope: Scope | None, owner: str | None
    ) -> None:
        scope = _scope(graph, path, parent_scope)
        for i in range(len(graph.node)) if in_order else topo_order(graph):
            node = graph.node[i]
            name = unique(node)
            used.add(name)
            slots.append(NodeSlot(node, name, len(slots), path, scope, owner))
            for label, g in subgraphs(node):
                visit(g, f"{name}/{label}", scope, name)

    visit(model.graph, "", None, None)
    return slots


def normalize(model: onnx.ModelProto) -> list[NodeSlot]:
    """Sort every graph of ``model`` topologically and write unique node names, in place.

    Only for a model the caller owns (the loader's in-memory copy). Returns
    the walk of the normalized model.
    """
    # a graph topo_order leaves as it is needs no second pass (2.5 ms on PP-OCRv4 rec)
    slots = _walk(model, in_order=_sort_in_place(model.graph))
    for slot in slots:
        if slot.node.name != slot.name:
            slot.node.name = slot.name
    return slots


def _sort_in_place(graph: onnx.GraphProto) -> bool:
    """Sort ``graph`` and its subgraphs; whether every one was in that order already."""
    order = topo_order(graph)
    in_order = order == list(range(len(order)))
    if not in_order:
        nodes = [onnx.NodeProto() for _ in order]
        for dst, i in zip(nodes, order, strict=True):
            dst.CopyFrom(graph.node[i])
        del graph.node[:]
        graph.node.extend(nodes)
    for node in graph.node:
        for _, g in subgraphs(node):
            in_order = _sort_in_place(g) and in_order
    return in_order
