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

Weights the loader left in external files count as the export will hold them
(:func:`file_bytes`). :meth:`LayerSizer.total` is what :func:`file_bytes` would return; the
exporter compares the two once after the last layer and re-measures the slow way on any
difference, so an edit made outside these parts costs time, never a wrong number.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter

import onnx
from google.protobuf import unknown_fields

from bitlens.core.export.editing import field_bytes
from bitlens.core.model.external import external_tensors, is_external
from bitlens.core.model.proto_copy import copy_but
from bitlens.core.model.proto_size import byte_size
from bitlens.core.model.types import Layer
from bitlens.core.model.validate import element_count, expected_raw_bytes


def tensor_bytes(t: onnx.TensorProto) -> int:
    """``t``'s serialized size with its data in the file: an external tensor (which the
    loader leaves in its file, see bitlens.core.model.external) as it is once read in."""
    if not is_external(t):
        return t.ByteSize()
    inline = onnx.TensorProto()
    inline.CopyFrom(t)  # no data: it is in its file
    del inline.external_data[:]
    inline.data_location = onnx.TensorProto.DEFAULT  # set, as reading it in does
    return inline.ByteSize() + field_bytes(
        expected_raw_bytes(t.data_type, element_count(t.dims)) or 0
    )


def graph_bytes(model: onnx.ModelProto) -> int:
    """The main graph's serialized size once its external tensors are read in."""
    return graph_proto_bytes(model.graph) + sum(
        field_bytes(tensor_bytes(t)) - field_bytes(t.ByteSize()) for t in external_tensors(model)
    )


def graph_proto_bytes(g: onnx.GraphProto) -> int:
    """``g.ByteSize()``, measured a node and an initializer at a time
    (core/model/proto_size.py): upb sizes a message by encoding it with the interpreter lock
    held, 30 ms at once for PP-OCRv4 rec's graph (its weights in Constant nodes), twice per
    export build, which the window waited for (docs/benchmarks.md, "exportgil (session 15)")."""
    return byte_size(g)


def header_bytes(model: onnx.ModelProto) -> int:
    """Serialized bytes of every model field but the graph. Sized on a copy of those fields
    alone: upb sizes a message by encoding it, and the graph holds the weights (0.18 s per
    measurement of a 54 MB model under load, where the header takes microseconds)."""
    if len(unknown_fields.UnknownFieldSet(model)):  # ByteSize counts them; a copy would not
        graph = field_bytes(model.graph.ByteSize()) if model.HasField("graph") else 0
        return model.ByteSize() - graph
    return copy_but(model, onnx.ModelProto(), ("graph",)).ByteSize()


def file_bytes(model: onnx.ModelProto, graph: int | None = None) -> int:
    """``model.ByteSize()`` once its external tensors are read in (the loader keeps only
    main-graph initializers outside, so no subgraph's length prefix changes). ``graph``:
    :func:`graph_bytes` of ``model``, when the caller measured it already (only the header
    is measured then)."""
    if not model.HasField("graph"):
        return model.ByteSize()
    return header_bytes(model) + field_bytes(graph_bytes(model) if graph is None else graph)


@dataclass(frozen=True)
class Mark:
    """The touched parts' sizes before a layer is written."""

    names: frozenset[str]  # tensor names whose nodes, initializers and inputs are measured
    owners: frozenset[str]  # keys of main-graph nodes holding the layer's subgraph
    before: int  # their serialized bytes, each as a field of the graph
    initializers: frozenset[str]  # every initializer name of the main graph at the mark
    # ids of the initializers' wrappers at the mark (held by the sizer until its delta):
    # only the others can be new then; None: every initializer is looked at
    present: frozenset[int] | None = None


_Entry = tuple[object, frozenset[str], str]
_KEY = itemgetter(2)


class LayerSizer:
    """The main graph's serialized size, kept current from the parts each layer edits."""

    def __init__(self, model: onnx.ModelProto, model_bytes: int, graph: int | None = None):
        """``model_bytes``: :func:`file_bytes` of ``model``, measured by the caller;
        ``graph``: its :func:`graph_bytes`, if measured too."""
        self.model = model
        self.graph_bytes = graph_bytes(model) if graph is None else graph
        self.header = model_bytes - field_bytes(self.graph_bytes)  # every other model field
        # Names read once per node and initializer: reading them from the protobuf on every
        # scan cost 8 ms per scan of an 860-node model. Keyed by the message wrapper, which
        # upb keeps as one object per element while it is referenced (held here); the
        # entries of what a layer touched are dropped after it, as those are what it edits.
        self._names: dict[int, _Entry] = {}
        # The same entries indexed by the names a node reads and writes (``_io``) and by
        # their key (``_keys``): a layer's parts are looked up by its names where a Python
        # pass over every node and initializer tested each (3-5 passes per layer and build,
        # 0.25-0.45 ms each on YOLOv8n's 955 nodes: docs/benchmarks.md "The plans run as deployed").
        self._io: dict[str, set[int]] = {}
        self._keys: dict[str, set[int]] = {}
        # (numbers of nodes, initializers, inputs; their id sets) as the last delta left them
        self._last: tuple[int, int, int, set[int], set[int], set[int]] | None = None

    def total(self) -> int:
        """:func:`file_bytes` of the model as of the last :meth:`delta`."""
        return self.header + field_bytes(self.graph_bytes)

    def mark(self, layer: Layer) -> Mark:
        names = {*layer.outputs, *layer.activations}
        names.update(w.name for w in (*layer.weights, *layer.biases))
        owners = self._owners(layer)
        nodes, init_ids, inputs = self._graph()
        # the layer's node (inputs renamed, replaced), the Add holding a MatMul's bias, the
        # Constant nodes holding its weights; the constants those nodes read (biases)
        for n in self._nodes(frozenset(names), owners, nodes):
            names.update(n.input)  # type: ignore[attr-defined]
        frozen = frozenset(names)
        every = frozenset(map(_KEY, map(self._names.__getitem__, init_ids)))
        before = self._measure(frozen, owners, nodes, init_ids | inputs)[0]
        return Mark(frozen, owners, before, every, frozenset(init_ids))

    def delta(self, mark: Mark) -> int:
        """Bytes the model grew by since ``mark`` (negative when it shrank)."""
        g = self.model.graph
        nodes = self._entries(g.node)
        init_ids = self._entries(g.initializer)
        inputs = self._entries(g.input)
        after, stale = self._measure(mark.names, mark.owners, nodes, init_ids | inputs)
        # what the layer touched may have changed: its entries are read anew (those still in
        # the graph at once, from the messages held: nothing changes before the next mark)
        present = nodes | init_ids | inputs
        for k in stale:
            entry = self._drop(k)
            if entry is not None and k in present:
                self._read(k, entry[0])
        self._last = (len(g.node), len(g.initializer), len(g.input), nodes, init_ids, inputs)
        # An initializer present at the mark and not read anew had its name in
        # mark.initializers then and has it still: only the others can be new.
        since = init_ids if mark.present is None else init_ids - mark.present
        entries = self._names
        for i in since | (init_ids & stale):
            t, _io, name = entries[i]
            if name not in mark.initializers and name not in mark.names:
                after += field_bytes(tensor_bytes(t))  # type: ignore[arg-type]
        old = field_bytes(self.graph_bytes)
        self.graph_bytes += after - mark.before
        return field_bytes(self.graph_bytes) - old

    def _graph(self) -> tuple[set[int], set[int], set[int]]:
        """The ids of the main graph's nodes, initializers and inputs. Iterating a repeated
        field of 955 nodes took 1-2.5 ms (upb finds each element's wrapper; YOLOv8n under
        load): the sets the last :meth:`delta` read serve the next mark, as long as the
        graph has the same number of each (the exporter edits nothing between a layer's
        delta and the next one's mark; an edit missed anyway shows in the exporter's check
        of :meth:`total`)."""
        g = self.model.graph
        last = self._last
        if last is not None and last[:3] == (len(g.node), len(g.initializer), len(g.input)):
            return last[3], last[4], last[5]
        return self._entries(g.node), self._entries(g.initializer), self._entries(g.input)

    def _entries(self, msgs) -> set[int]:
        """The ids of ``msgs``' wrappers, each one's entry read in if it is new."""
        held = list(msgs)  # every wrapper referenced while its id is taken: ids stay unique
        ids = list(map(id, held))
        present = set(ids)
        new = present.difference(self._names)
        for i, m in zip(ids, held, strict=True) if new else ():
            if i in new:
                self._read(i, m)
        return present

    def _read(self, i: int, m) -> None:
        """Enter ``m`` (id ``i``): (message, the names a node reads and writes, its key), or
        (message, ∅, the name) of an initializer or a graph input."""
        if isinstance(m, onnx.NodeProto):
            entry = (m, frozenset((*m.input, *m.output)), _node_key(m))
        else:
            entry = (m, frozenset(), m.name)
        self._names[i] = entry
        for n in entry[1]:
            self._io.setdefault(n, set()).add(i)
        self._keys.setdefault(entry[2], set()).add(i)

    def _nodes(
        self, names: frozenset[str], owners: frozenset[str], nodes: set[int]
    ) -> list[onnx.NodeProto]:
        """The nodes of ``nodes`` (ids) that read or write one of ``names``, or whose key is
        one of ``owners``."""
        found = (_lookup(self._io, names) | _lookup(self._keys, owners)) & nodes
        return [self._names[i][0] for i in found]  # type: ignore[misc]

    def _measure(
        self, names: frozenset[str], owners: frozenset[str], nodes: set[int], readers: set[int]
    ) -> tuple[int, set[int]]:
        """Serialized bytes of the nodes of ``nodes`` and the initializers or inputs of
        ``readers`` (ids) that ``names`` and ``owners`` reach; the ids of the entries that
        name those, or are those (what a layer with these names may have edited)."""
        found = self._nodes(names, owners, nodes)
        # graphs of IR < 4 list their initializers as inputs too
        touched_ids = _lookup(self._keys, names) & readers
        touched = [self._names[i][0] for i in touched_ids]
        size = sum(field_bytes(m.ByteSize()) for m in found)
        size += sum(field_bytes(_size(m)) for m in touched)
        stale = {id(m) for m in found} | touched_ids
        stale |= _lookup(self._io, names) | _lookup(self._keys, names)
        return size, stale

    def _drop(self, i: int) -> _Entry | None:
        entry = self._names.pop(i, None)
        if entry is not None:
            for n in entry[1]:
                _discard(self._io, n, i)
            _discard(self._keys, entry[2], i)
        return entry

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


def _discard(index: dict[str, set[int]], name: str, i: int) -> None:
    ids = index[name]
    ids.discard(i)
    if not ids:
        del index[name]


def _lookup(index: dict[str, set[int]], names) -> set[int]:
    """Every id ``index`` files under one of ``names``."""
    get = index.get
    return set().union(*(get(n, ()) for n in names))


def _size(m) -> int:
    return tensor_bytes(m) if isinstance(m, onnx.TensorProto) else m.ByteSize()


def _node_key(node: onnx.NodeProto) -> str:
    # outputs are unique in a graph (SSA); a node keeps them when the exporter replaces it
    return "\0".join(node.output) or f"\0{node.name}"
