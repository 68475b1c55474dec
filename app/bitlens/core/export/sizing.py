"""Each layer's bytes in the exported file, measured on what the layer touched.

The export records how many bytes each layer adds to the file (its codes, scales, nodes and
names, minus the float weights it removes). Measuring that as ``ModelProto.ByteSize()`` before
and after the layer serializes the whole model twice per layer (upb sizes a message by
encoding it): 6 of the 20 s of exporting a 54 MB OCR model. :class:`LayerSizer` gets the
same numbers from the parts a layer can change: the main graph's nodes that produce or read
the layer's tensors (or hold the subgraph it lives in), the initializers and graph inputs of
those names, and the initializers added during the step. A graph is a length-delimited field
of the model (https://protobuf.dev/programming-guides/encoding/#length-types), so the model
grows by the graph's growth plus any change in the length prefix's varint.

:meth:`LayerSizer.total` is what ``model.ByteSize()`` would return; the exporter compares it
with one real ``ByteSize()`` after the last layer and re-measures the slow way on any
difference, so an edit made outside these parts costs time, never a wrong number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import onnx

from bitlens.core.export.editing import field_bytes
from bitlens.core.model.types import Layer


@dataclass(frozen=True)
class Mark:
    """The touched parts' sizes before a layer is written."""

    names: frozenset[str]  # tensor names whose nodes, initializers and inputs are measured
    owners: frozenset[str]  # keys of main-graph nodes holding the layer's subgraph
    before: int  # their serialized bytes, each as a field of the graph
    initializers: frozenset[str]  # every initializer name of the main graph at the mark


class LayerSizer:
    """The main graph's serialized size, kept current from the parts each layer edits."""

    def __init__(self, model: onnx.ModelProto, model_bytes: int):
        """``model_bytes``: ``model.ByteSize()``, already measured by the caller."""
        self.model = model
        self.graph_bytes = model.graph.ByteSize()
        self.header = model_bytes - field_bytes(self.graph_bytes)  # every other model field

    def total(self) -> int:
        """``model.ByteSize()`` as of the last :meth:`delta`."""
        return self.header + field_bytes(self.graph_bytes)

    def mark(self, layer: Layer) -> Mark:
        names = {*layer.outputs, *layer.activations}
        names.update(w.name for w in (*layer.weights, *layer.biases))
        owners = self._owners(layer)
        g = self.model.graph
        # the layer's node (inputs renamed, replaced), the Add holding a MatMul's bias, the
        # Constant nodes holding its weights; the constants those nodes read (biases)
        touched = [n for n in g.node if _node_key(n) in owners or _reads_or_writes(n, names)]
        names.update(i for n in touched for i in n.input)
        frozen = frozenset(names)
        return Mark(
            frozen, owners, self._measure(frozen, owners), frozenset(t.name for t in g.initializer)
        )

    def delta(self, mark: Mark) -> int:
        """Bytes the model grew by since ``mark`` (negative when it shrank)."""
        g = self.model.graph
        after = self._measure(mark.names, mark.owners)
        after += sum(
            field_bytes(t.ByteSize())
            for t in g.initializer
            if t.name not in mark.initializers and t.name not in mark.names
        )
        old = field_bytes(self.graph_bytes)
        self.graph_bytes += after - mark.before
        return field_bytes(self.graph_bytes) - old

    def _measure(self, names: frozenset[str], owners: frozenset[str]) -> int:
        g = self.model.graph
        size = sum(
            field_bytes(n.ByteSize())
            for n in g.node
            if _node_key(n) in owners or _reads_or_writes(n, names)
        )
        size += sum(field_bytes(t.ByteSize()) for t in g.initializer if t.name in names)
        # graphs of IR < 4 list their initializers as inputs too
        size += sum(field_bytes(v.ByteSize()) for v in g.input if v.name in names)
        return size

    def _owners(self, layer: Layer) -> frozenset[str]:
        """Keys of the main-graph nodes whose subgraphs hold the layer (its weights may live
        in the subgraph or in any graph between); all control-flow nodes if the path's first
        node cannot be told apart (names with "/" in them)."""
        paths = {layer.graph_path, *(w.graph_path for w in (*layer.weights, *layer.biases))}
        paths.discard("")
        if not paths:
            return frozenset()
        holders = [
            (i, n)
            for i, n in enumerate(self.model.graph.node)
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                   for a in n.attribute)
        ]  # fmt: skip
        found = {
            _node_key(n)
            for i, n in holders
            for p in paths
            if p.startswith(f"{n.name or f'{n.op_type}_{i}'}/")
        }
        return frozenset(found or (_node_key(n) for _, n in holders))


def _node_key(node: onnx.NodeProto) -> str:
    # outputs are unique in a graph (SSA); a node keeps them when the exporter replaces it
    return "\0".join(node.output) or f"\0{node.name}"


def _reads_or_writes(node: onnx.NodeProto, names: Iterable[str]) -> bool:
    names = names if isinstance(names, (set, frozenset)) else set(names)
    return any(o in names for o in node.output) or any(i in names for i in node.input)
