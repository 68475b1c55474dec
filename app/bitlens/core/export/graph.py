"""A small helper that accumulates nodes and initializers under unique names.

The exporter adds many short subgraphs (unpack, rescale, quantize) to a
model whose own tensor and node names must never be shadowed; every name
made here is checked against the names already in use.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine.graphs import iter_nodes


def used_names(model: onnx.ModelProto) -> set[str]:
    """Every tensor and node name anywhere in ``model`` (subgraphs included)."""
    names: set[str] = set()

    def graph_names(g: onnx.GraphProto) -> None:
        names.update(t.name for t in g.initializer)
        names.update(v.name for v in (*g.input, *g.output, *g.value_info))

    graph_names(model.graph)
    for node in iter_nodes(model.graph):
        names.add(node.name)
        names.update(node.input)
        names.update(node.output)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                graph_names(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    graph_names(g)
    names.discard("")
    return names


class GraphBuilder:
    """Collects nodes and initializers; names are ``<prefix>_<hint>`` made unique."""

    INT64 = TensorProto.INT64
    FLOAT = TensorProto.FLOAT
    BOOL = TensorProto.BOOL

    def __init__(
        self,
        prefix: str,
        taken: set[str],
        shared: dict[tuple, str] | None = None,
        functions: dict[str, onnx.FunctionProto] | None = None,
    ) -> None:
        self.prefix = prefix
        # model-local functions by name (one per kind of subgraph, shared by every builder
        # of the model); None: the subgraphs are written out node by node
        self.functions = functions
        # small int64 constants (shapes, index tables) already in the same graph, by value:
        # every 2-bit weight's unpack subgraph needs the same tables
        self.shared = shared
        self.taken = taken  # shared with other builders of the same model
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        # Intermediate tensors and node names are short: a rebuild subgraph has ~30 nodes, and
        # names of the form "<weight name>_<op>_<k>", each written twice (producer and
        # consumer), made small layers' files bigger at 2 bits than at 8. Deterministic: the
        # tag depends only on how many names the model already uses.
        self._tag = f"b{len(taken)}_"
        self._seq = 0

    def name(self, hint: str) -> str:
        base = f"{self.prefix}_{hint}"
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name

    def const(self, hint: str, value: np.ndarray) -> str:
        value = np.asarray(value)
        key = None
        if self.shared is not None and value.dtype == np.int64 and value.size <= 16:
            key = (value.shape, value.tobytes())
            if key in self.shared:
                return self.shared[key]
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        if key is not None:
            self.shared[key] = name
        return name

    def add_initializer(self, tensor: onnx.TensorProto) -> str:
        """Add an already-built tensor (e.g. a packed int4 one) under a fresh name."""
        tensor.name = self.name(tensor.name or "t")
        self.initializers.append(tensor)
        return tensor.name

    def node(
        self,
        op: str,
        inputs: Sequence[str],
        output: str | None = None,
        *,
        domain: str | None = None,
        **attrs: object,
    ) -> str:
        """Add one single-output node; returns its output name (fresh unless given)."""
        out = output if output is not None else self.short()
        self.nodes.append(
            helper.make_node(op, list(inputs), [out], name=self.short(), domain=domain, **attrs)
        )
        return out

    def short(self) -> str:
        """A fresh short name for an intermediate tensor or a node."""
        while True:
            name = f"{self._tag}{self._seq}"
            self._seq += 1
            if name not in self.taken:
                self.taken.add(name)
                return name

    def extend(self, nodes: Iterable[onnx.NodeProto]) -> None:
        self.nodes.extend(nodes)


def rename_output(b: GraphBuilder, old: str, new: str) -> None:
    """Make the node of ``b`` that produces ``old`` write ``new`` instead (``old`` is its last use)."""
    for node in reversed(b.nodes):
        for i, o in enumerate(node.output):
            if o == old:
                node.output[i] = new
                return
    raise KeyError(old)
