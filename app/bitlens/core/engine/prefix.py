"""Re-evaluation from cached quantized activations: run only what follows a change.

Under a plan, the value of a tensor depends only on the choices of the layers
whose nodes come before the node producing it (graph order), plus the
deployment target's quantizers on earlier tensors: weights and quantizer
parameters are graph inputs read only by their own layer's nodes. So the
engine keeps the values a run computed for the tensors that cross a *cut*
(the point just before a layer, where a suffix run would start), keyed by
that "prefix state". When a later plan changes layers from layer ``f`` on,
the part of the simulation graph from ``f``'s cut onward runs alone (one
session per cut, built lazily and cached), fed with the cached values of
the tensors entering it, and gives the same numbers as the whole graph: the
suffix holds the very same nodes, and every tensor crossing a cut is also an
output of the whole graph, so ONNX Runtime fuses nothing across it in either.

Layers inside If/Loop/Scan bodies, and weights that a node before the cut
also reads (shared weights), leave those cuts out; the engine then runs the
whole graph as before.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from bitlens.core import targets
from bitlens.core.engine.parts import GraphIndex, common_shape, graph_index, input_info, part_model
from bitlens.core.engine.rewrite import fed_constants
from bitlens.core.model.types import ModelInfo

# How a part graph declares a cut tensor it reads: its dtype, its rank and, for an
# integer tensor, the dims its values had on every feed run (None: not known).
Declared = tuple[np.dtype, int, tuple[int | None, ...] | None]


@dataclass(frozen=True)
class Cuts:
    """Where a simulation graph can be cut, one cut per main-graph layer.

    ``order``: the main layers in graph order with ``positions`` (the model's node index
    of each layer's node); ``start[f]``: the first simulation node of the part that
    follows layer ``f``'s cut; ``boundary[f]``: the tensors entering that part;
    ``position[t]``: for every tensor some cut reads, and each model output, the model's
    node index its value is settled at (-1: before any node); ``index[t]``: the index of
    the simulation node producing it (-1: a graph input)."""

    order: tuple[str, ...]
    positions: tuple[int, ...]
    start: dict[str, int]
    boundary: dict[str, tuple[str, ...]]
    position: dict[str, int]
    index: dict[str, int]
    # the graph the cuts were found in, read once (build_tail reads it too)
    graph: GraphIndex | None = field(default=None, compare=False, repr=False)

    @property
    def tensors(self) -> list[str]:
        """Every tensor some cut reads: what a run fetches and keeps."""
        return list(dict.fromkeys(t for b in self.boundary.values() for t in b))


def find_cuts(sim: onnx.ModelProto, info: ModelInfo, positions: Mapping[str, int]) -> Cuts | None:
    """The cuts of ``sim`` (the engine's simulation graph of ``info``); ``positions`` maps a
    main-graph tensor to the model's node index producing it. None when the model has
    layers inside subgraphs (their weights feed a node that is not theirs)."""
    if any(layer.graph_path for layer in info.layers):
        return None
    g = sim.graph
    gi = graph_index(sim)
    nodes = gi.nodes
    outs = gi.outputs
    layers = sorted(
        (positions[la.outputs[0]], la) for la in info.layers if la.outputs[0] in positions
    )
    if len(layers) != len(info.layers):
        return None
    # The model position of each simulation node: its own if it is one of the model's
    # nodes, else that of the model node before it (inserted quantizers).
    sim_pos: list[int] = []
    last = -1
    for out in outs:
        own = [positions[o] for o in out if o in positions]
        if own:
            last = own[0]
        sim_pos.append(last)
    producer = gi.producer
    reads = gi.reads
    last_read: dict[str, int] = {}
    for i, names in enumerate(reads):
        for name in names:
            last_read[name] = i
    graph_inputs = set(gi.input_order)
    initializers = set(gi.initializers)
    first_read: dict[str, int] = {}
    for i in range(len(nodes) - 1, -1, -1):
        for name in reads[i]:
            first_read[name] = i
    start: dict[str, int] = {}
    boundary: dict[str, tuple[str, ...]] = {}
    position: dict[str, int] = {}
    index: dict[str, int] = {}
    model_nodes = [i for i, out in enumerate(outs) if any(o in positions for o in out)]
    model_pos = [sim_pos[i] for i in model_nodes]  # ascending: the model's order is kept
    candidates = sorted(
        (j, name)
        for name, j in producer.items()
        if last_read.get(name, -1) > j and not gi.constant[j]
    )
    # as arrays: a cut's crossing tensors are one vectorized test (the list scan per layer
    # cost 10 ms a structure on a 46-layer CRNN)
    made = np.array([j for j, _ in candidates], dtype=np.int64)
    read_last = np.array([last_read[name] for _, name in candidates], dtype=np.int64)
    # first node reading a weight (biases are fed too) of this layer or a later one
    earliest = len(nodes)
    for pos, layer in reversed(layers):
        reads = [first_read.get(w.name, len(nodes)) for w in fed_constants(layer)]
        earliest = min([earliest, *reads])
        # After the last model node before this layer's node: the layer's own activation
        # quantizers, and the target's quantizers on that node's outputs, run in the part
        # that follows the cut.
        k = bisect_left(model_pos, pos)
        s = model_nodes[k - 1] + 1 if k else 0
        if earliest < s:
            continue  # a weight of this or a later layer is also read before the cut
        crossing = [candidates[c][1] for c in np.flatnonzero((made < s) & (read_last >= s))]
        start[layer.name] = s
        boundary[layer.name] = tuple(crossing)
        for name in crossing:
            position[name] = sim_pos[producer[name]]
            index[name] = producer[name]
    for v in g.output:
        if v.name in producer:
            position.setdefault(v.name, sim_pos[producer[v.name]])
            index.setdefault(v.name, producer[v.name])
        elif v.name in graph_inputs or v.name in initializers:
            position.setdefault(v.name, -1)
            index.setdefault(v.name, -1)
    return Cuts(
        tuple(la.name for _, la in layers),
        tuple(p for p, _ in layers),
        start,
        boundary,
        position,
        index,
        gi,
    )


def build_tail(
    sim: onnx.ModelProto,
    start: int,
    boundary: Sequence[str],
    declared: Mapping[str, Declared],
    end: int | None = None,
    index: GraphIndex | None = None,
) -> onnx.ModelProto:
    """The simulation nodes from index ``start`` on (up to ``end``, excluded; with the
    Constant nodes they read), reading ``boundary`` as inputs, each as ``declared`` says
    (PrefixValues.declared); its outputs are ``sim``'s outputs produced there. ``index``:
    ``sim`` read once (:func:`graph_index`)."""
    ix = graph_index(sim) if index is None else index
    stop = len(ix.nodes) if end is None else end
    produced = {o for out in ix.outputs[start:stop] for o in out if o}

    def declare(name: str) -> onnx.ValueInfoProto:
        dtype, rank, shape = declared[name]
        return input_info(name, dtype, rank, lambda _: shape)

    outputs = [v for v in sim.graph.output if v.name in produced]
    return part_model(sim, ix, range(start, stop), outputs, declare, boundary, "bitlens_tail")


def placed_in_order(
    placed: Mapping[str, targets.TensorQuantizer], positions: Mapping[str, int]
) -> list[tuple[int, str, tuple]]:
    """The target's quantizers as (position of the producing node, tensor, what settles
    its values) in graph order, for the keys of values settled before a point: the same for
    plans that quantize the same tensors the same way in another order or for another
    reason (a first layer at int4: its output is quantized as an Add's input, no longer as
    its QLinearConv's output; keyed apart, nothing kept was read again)."""
    return sorted((positions.get(t, -1), t, q.grid) for t, q in placed.items())


class PrefixValues:
    """Values of cut tensors per (structure, tensor, prefix state): a tuple over the
    evaluation feeds. Past ``budget`` bytes, entries never read back go first, newest
    first, then the least recently used: the values of the plan the later changes start
    from (the user's base plan, kept first) outlive those of each one-off variant, which
    otherwise pushed them out after two variants (each run keeps what fits after them)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit  # never more than this
        self.budget = limit  # what is kept now (the engine lowers it, see reuse.py)
        self.nbytes = 0
        self._values: OrderedDict[tuple, tuple[np.ndarray, ...]] = OrderedDict()
        self._read: set[tuple] = set()  # keys some run started from
        self.types: dict[str, tuple[np.dtype, int]] = {}
        # the dims integer cut tensors had, those common to every feed run (see declared)
        self.int_shapes: dict[str, tuple[int | None, ...]] = {}

    def saw(self, values: Mapping[str, np.ndarray], names: Sequence[str]) -> None:
        """Note the types of cut tensors ``names`` from one feed's run ``values`` (the
        first seen stays), and the dims of the integer ones (those every run agrees on)."""
        for t in names:
            v = values[t]
            self.types.setdefault(t, (v.dtype, v.ndim))
            if v.dtype.kind in "iub":
                had = self.int_shapes.get(t, v.shape)
                if len(had) == v.ndim:  # else declared by its rank alone
                    self.int_shapes[t] = common_shape([had, v.shape])

    def declared(self) -> dict[str, Declared]:
        """How part graphs declare the cut tensors seen (build_tail)."""
        shapes = self.int_shapes
        return {t: (dtype, rank, shapes.get(t)) for t, (dtype, rank) in self.types.items()}

    def get(self, key: tuple) -> tuple[np.ndarray, ...] | None:
        found = self._values.get(key)
        if found is not None:
            self._values.move_to_end(key)
            self._read.add(key)
        return found

    def __contains__(self, key: tuple) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def put(self, key: tuple, values: Sequence[np.ndarray]) -> None:
        """Keep ``values``, dropping others past the budget (see the class)."""
        if key in self._values:
            self._values.move_to_end(key)
            return
        size = sum(v.nbytes for v in values)
        if size > self.budget:
            return
        self._values[key] = tuple(values)
        self.nbytes += size
        while self.nbytes > self.budget and self._values:
            old = next(
                (k for k in reversed(self._values) if k not in self._read and k != key), None
            )
            if old is None:
                old = next(iter(self._values))
            self.nbytes -= sum(v.nbytes for v in self._values.pop(old))
            self._read.discard(old)

    def clear(self) -> None:
        self._values.clear()
        self._read.clear()
        self.nbytes = 0

