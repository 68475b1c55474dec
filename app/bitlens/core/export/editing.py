"""The model being rewritten by the exporter: pending insertions, shared weights."""

from __future__ import annotations

import onnx

from bitlens.core.engine.graphs import (
    find_graph,
    initializer_named,
    iter_nodes,
    node_producing,
    remove_definition,
)
from bitlens.core.errors import ExportError
from bitlens.core.export import graph_index
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.export.weights import WeightEncoding
from bitlens.core.model.proto_copy import extend_in_slices
from bitlens.core.model.types import Storage, WeightInfo
from bitlens.core.model.wire import varint_size
from bitlens.core.shared_weights import WeightKey


class ExportState:
    """The model being edited: pending node insertions per graph, shared weights."""

    def __init__(self, model: onnx.ModelProto, taken: set[str]):
        self.model = model
        self.taken = taken
        self.prepend: dict[str, list[onnx.NodeProto]] = {}  # graph path -> nodes to put first
        self.before: dict[str, list[onnx.NodeProto]] = {}  # layer output -> nodes to insert first
        # (graph path, weight) -> (format, encoding) as its stored reader wrote it
        self.weights: dict[WeightKey, tuple[str, WeightEncoding | None]] = {}
        self.stored: dict[WeightKey, tuple[str, WeightInfo]] = {}  # shared_weights.stored_readers
        self._sized: dict[int, tuple[int, int]] = {}
        self.shared: dict[
            str, dict[tuple, str]
        ] = {}  # graph path -> GraphBuilder.shared  # id(pending list) -> (nodes sized, bytes)
        self.functions: dict[str, onnx.FunctionProto] = {}  # GraphBuilder.functions
        self.opset = 0  # the export's opset (build sets it): how 4-bit kernel codes are stored
        self._flat: bool | None = None  # the model holds no subgraph (consumers: known once)
        self._index: graph_index.GraphIndex | None = None  # the main graph's, once asked for

    def index(self, g: onnx.GraphProto) -> graph_index.GraphIndex | None:
        """The index of ``g`` if it is the main graph (the one the layers' edits scan)."""
        main = self.model.graph  # the same wrapper as ``g`` while either is referenced
        if not graph_index.INDEXED or g is not main:
            return None
        if self._index is None or self._index.g is not main:
            self._index = graph_index.GraphIndex(main)
        return self._index

    def node_producing(self, g: onnx.GraphProto, tensor: str) -> tuple[int, onnx.NodeProto]:
        """``graphs.node_producing``, from the index where ``g`` has one."""
        index = self.index(g)
        return node_producing(g, tensor) if index is None else index.node_producing(tensor)

    def initializer(self, g: onnx.GraphProto, name: str) -> onnx.TensorProto | None:
        """``g``'s initializer named ``name`` (the first), or None."""
        index = self.index(g)
        if index is None:
            return initializer_named(g, name)
        return index.initializer(name)

    def remove_weight(self, g: onnx.GraphProto, w: WeightInfo) -> None:
        """Drop the float weight's definition (initializer, input entry or Constant node)."""
        index = self.index(g)
        constant = w.storage is Storage.CONSTANT
        if not (
            remove_definition(g, w.name, constant)
            if index is None
            else index.remove_definition(w.name, constant)
        ):
            where = "an initializer" if w.storage is Storage.INITIALIZER else "a Constant node"
            raise ExportError(f"weight {w.name!r} is not {where} of its graph")

    def graph(self, path: str) -> onnx.GraphProto:
        return find_graph(self.model.graph, path)

    def add_to_graph(self, path: str, b: GraphBuilder) -> None:
        self.graph(path).initializer.extend(b.initializers)
        self.prepend.setdefault(path, []).extend(b.nodes)

    def pending_bytes(self) -> int:
        """Serialized bytes the pending nodes will add to their graphs (tag, length, node)."""
        total = 0
        for nodes in [*self.prepend.values(), *self.before.values()]:
            # the lists only grow: size each node once
            count, size = self._sized.get(id(nodes), (0, 0))
            if len(nodes) != count:
                size += sum(field_bytes(n.ByteSize()) for n in nodes[count:])
                self._sized[id(nodes)] = (len(nodes), size)
            total += size
        # the model-local functions the layers call (their domain's opset import is part of
        # the model's header, which the accounting measures on the finished model)
        return total + sum(field_bytes(f.ByteSize()) for f in self.functions.values())

    def consumers(self, tensor: str) -> int:
        # membership first (in C): a Python loop over every node's inputs, once per int32
        # bias, was 4% of a default search's profile on nudenet's YOLOv8n
        g = self.model.graph
        if self._flat is None:
            self._flat = not any(_holds_graph(n) for n in g.node)
        # a model without subgraphs keeps none: the exporter adds no node that holds one.
        # Its main graph's nodes alone, then, without reading every node's attributes
        # (still 4.3% of nudenet's search, sampled, in session 13; 1.3-2.6x faster per call)
        nodes = g.node if self._flat else iter_nodes(g)
        return sum(list(n.input).count(tensor) for n in nodes if tensor in n.input)

    def finish(self) -> None:
        """Insert the pending nodes. Rewriting a graph's node list copies its nodes, and with
        them the subgraphs they hold, so subgraphs go first (deepest first), looked up anew."""
        for path in sorted((p for p in self.prepend if p), key=lambda p: -p.count("/")):
            g = self.graph(path)
            set_nodes(g, [*self.prepend[path], *g.node])
        g = self.model.graph
        ordered: list[onnx.NodeProto] = list(self.prepend.get("", []))
        for node in g.node:
            if node.output and node.output[0] in self.before:
                ordered.extend(self.before[node.output[0]])
            ordered.append(node)
        set_nodes(g, ordered)
        # a function imports the model's own version of the default domain (the checker
        # insists); its ops mean the same from opset 13 on, and the size is the same
        opset = next(o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx"))
        for name in sorted(self.functions):
            f = self.functions[name]
            del f.opset_import[:]
            f.opset_import.append(onnx.helper.make_opsetid("", opset))
            self.model.functions.append(f)
        for domain in sorted({f.domain for f in self.functions.values()}):
            self.model.opset_import.append(onnx.helper.make_opsetid(domain, 1))


def _holds_graph(node: onnx.NodeProto) -> bool:
    return any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
    )


# Nodes copied into a graph per call, so the window's thread can take the interpreter lock
# between calls (core/model/proto_copy.py; docs/benchmarks.md, "exportgil (session 15)").
NODES_PER_COPY = 32


def set_nodes(g: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """``g``'s nodes replaced by ``nodes`` (copies), a few at a time."""
    del g.node[:]
    extend_in_slices(g.node, nodes, NODES_PER_COPY)


def field_bytes(n: int) -> int:
    """A length-delimited protobuf field of ``n`` bytes: 1-byte tag, varint length, data."""
    return 1 + varint_size(n) + n
