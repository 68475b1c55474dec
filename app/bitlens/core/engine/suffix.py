"""The part of the simulation graph downstream of one layer (suffix evaluation).

Changing one layer's weights in an otherwise float model changes only the
nodes that depend on that layer's output. The sensitivity sweep therefore
runs, per layer, only those nodes (pruned further to what the wanted output
needs), fed with the *float* values of every tensor that enters them from
upstream, which the engine already holds as its float reference. On a chain
of L layers this runs on average half the model per (layer, format) instead
of all of it, and nothing at all for layers the output does not depend on.

One session per layer's suffix is L sessions of half the graph on average, and ONNX
Runtime's set-up time grows with the nodes (on rapidocr's PP-OCRv4 recognizer, 700
nodes, 85 ms a session whatever the optimization level: 2.35 s of a 16 s sweep;
docs/benchmarks.md, "sweepfast: the sweep's suffix sessions shared"). So the graph is
cut at a fixed grid of layer nodes into parts.PARTS parts: a layer's suffix runs as its *head*
(its suffix's nodes before the next grid point, a small session of its own) followed by
the *parts* after that point, whose sessions every layer shares (weights are fed, so one
session serves every format of every layer), chained with :class:`chain.Chain`. The
grid and the part graphs are those of re-evaluation's chains (parts.py). The parts hold
every node the output needs after their grid point; where that is more than EXTRA of the
suffix's own nodes (branches the layer does not reach, e.g. a detector's other heads), the
layer's head is its whole suffix instead. The numbers are those of one session per suffix:
the same nodes on the same kernels (bit-identical entries on both models, and tested).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from bitlens.core.engine import parts as grid_parts
from bitlens.core.engine.graphs import value_info

EXTRA = 0.1  # the most nodes the parts may run beyond a layer's suffix, as a fraction of it


class NotASuffix(Exception):
    """A changed tensor is also read upstream of the layer: the suffix would miss it."""


@dataclass(frozen=True)
class Layout:
    """How one layer's suffix runs: ``head`` (node indices, graph order) in a session of
    its own, then the shared parts ``parts`` (grid part numbers); ``boundary``: the
    tensors read from the float reference."""

    head: tuple[int, ...]
    parts: tuple[int, ...]
    boundary: tuple[str, ...]


class SuffixGraph:
    """The float simulation graph read once, with the grid of its shared parts.

    ``types_of(name)``: dtype and rank of a tensor the float reference holds (None: not
    held; the graph's declared output type is used, rank unknown); ``shape_of(name)``: the
    shape of an integer tensor from its reference values."""

    def __init__(
        self,
        sim: onnx.ModelProto,
        grid_tensors: Sequence[str],
        types_of: Callable[[str], tuple[np.dtype, int] | None],
        shape_of: Callable[[str], tuple[int | None, ...]] | None = None,
        index: grid_parts.GraphIndex | None = None,
    ) -> None:
        self.sim = sim
        # ``index``: ``sim`` read already (the engine's cuts of the float graph hold it)
        self.index = ix = grid_parts.graph_index(sim) if index is None else index
        self.nodes = ix.nodes
        self.reads = ix.reads
        self.constant = ix.constant
        self.producer = ix.producer
        self.consumers: dict[str, list[int]] = {}
        for i, names in enumerate(self.reads):
            for name in names:
                self.consumers.setdefault(name, []).append(i)
        self.declared = {v.name: v for v in sim.graph.output}
        self._types_of = types_of
        self._shape_of = shape_of
        self._needed: dict[str, frozenset[int]] = {}
        self._parts: dict[tuple[int, str], tuple[tuple[int, ...], list[str]]] = {}
        self.grid = self._grid(grid_tensors)

    def _grid(self, tensors: Sequence[str]) -> list[int]:
        """Every len/PARTS-th node producing one of ``tensors`` (the layers' outputs) where
        only float tensors cross: an integer one entering a part would have no declared
        length there (see :meth:`_input`)."""
        last_read: dict[str, int] = {}
        for i, names in enumerate(self.reads):
            if not self.constant[i]:
                for name in names:
                    last_read[name] = i
        crossing = [
            (self.producer[t], last) for t, last in last_read.items()
            if t in self.producer and not self.constant[self.producer[t]]
            and not self._is_float(t)
        ]  # fmt: skip
        points = grid_parts.grid(
            p
            for t in tensors
            if (p := self.producer.get(t)) is not None and not any(a < p <= b for a, b in crossing)
        )
        return points[1:]  # the first part starts at the graph's first node

    def _is_float(self, name: str) -> bool:
        return np.dtype(self._dtype_rank(name)[0]).kind == "f"

    def _dtype_rank(self, name: str) -> tuple[np.dtype, int | None]:
        known = self._types_of(name)
        if known is not None:
            return known
        v = self.declared.get(name)
        if v is not None and v.type.tensor_type.elem_type:
            return helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type), None
        return np.dtype(np.int64), None  # not a float the reference keeps: taken as integer

    def needed(self, output: str) -> frozenset[int]:
        """The non-constant nodes ``output`` is computed from."""
        got = self._needed.get(output)
        if got is None:
            got = self._needed[output] = frozenset(self._computed_from([output]))
        return got

    def _computed_from(
        self, outputs: Sequence[str], held: Callable[[str], bool] = lambda _: False
    ) -> set[int]:
        """The non-constant nodes ``outputs`` are computed from, back to the tensors
        ``held`` says are at hand."""
        keep: set[int] = set()
        stack = [self.producer[o] for o in outputs]
        while stack:
            i = stack.pop()
            if i in keep:
                continue
            keep.add(i)
            for name in self.reads[i]:
                j = self.producer.get(name)
                if j is not None and j not in keep and not self.constant[j] and not held(name):
                    stack.append(j)
        return keep

    def _downstream(self, first: int) -> set[int]:
        downstream = {first}
        stack = [first]
        while stack:
            for o in self.nodes[stack.pop()].output:
                for c in self.consumers.get(o, ()):
                    if c not in downstream:
                        downstream.add(c)
                        stack.append(c)
        return downstream

    def layout(self, start: str, output: str, changed: Sequence[str] = ()) -> Layout | None:
        """How the suffix from the node producing ``start`` to ``output`` runs; None when
        ``output`` does not depend on it. Raises NotASuffix when a ``changed`` tensor is
        also read outside the suffix."""
        first = self.producer[start]
        downstream = self._downstream(first)
        for name in changed:  # e.g. a weight shared with a layer upstream
            if any(c not in downstream for c in self.consumers.get(name, ())):
                raise NotASuffix(name)
        if self.producer.get(output) not in downstream:
            return None
        needed = self.needed(output)
        keep = sorted(downstream & needed)
        at = next((k for k, s in enumerate(self.grid) if s > first), len(self.grid))
        if at < len(self.grid):
            tail = [j for j in needed if j >= self.grid[at]]
            if len([j for j in tail if j not in downstream]) > EXTRA * len(keep):
                at = len(self.grid)  # the parts would run branches the layer does not reach
        end = self.grid[at] if at < len(self.grid) else len(self.nodes)
        head = tuple(j for j in keep if j < end)
        parts = tuple(p for p in range(at, len(self.grid)) if self.part_nodes(p, output))
        produced = self._produced(head)
        boundary: list[str] = []
        for name in self._upstream(head)[2]:
            boundary.append(name)
        for p in parts:
            for name in self._part_reads(p, output):
                if name not in produced and name not in boundary:
                    boundary.append(name)
            produced |= self._produced(self.part_nodes(p, output))
        return Layout(head, parts, tuple(boundary))

    def part_nodes(self, part: int, output: str) -> tuple[int, ...]:
        """The nodes of grid part ``part`` that ``output`` needs, in graph order."""
        return self._part(part, output)[0]

    def _part_reads(self, part: int, output: str) -> list[str]:
        """The upstream tensors grid part ``part`` reads (for ``output``)."""
        return self._part(part, output)[1]

    def _part(self, part: int, output: str) -> tuple[tuple[int, ...], list[str]]:
        got = self._parts.get((part, output))
        if got is None:
            lo = self.grid[part]
            hi = self.grid[part + 1] if part + 1 < len(self.grid) else len(self.nodes)
            nodes = tuple(sorted(j for j in self.needed(output) if lo <= j < hi))
            got = self._parts[(part, output)] = (nodes, self._upstream(nodes)[2])
        return got

    def _produced(self, nodes: Sequence[int]) -> set[str]:
        return {o for i in nodes for o in self.nodes[i].output if o}

    def _upstream(self, nodes: Sequence[int]) -> tuple[list[str], list[int], list[str]]:
        return grid_parts.outside(self.index, nodes)

    def model(self, nodes: Sequence[int], outputs: Sequence[str]) -> onnx.ModelProto:
        """A graph of ``nodes`` (with the Constant nodes they read) computing ``outputs``,
        reading what else it needs as inputs."""
        out = [self._output(n) for n in outputs]
        return grid_parts.part_model(
            self.sim, self.index, nodes, out, self._input, name="bitlens_suffix"
        )

    def _input(self, name: str) -> onnx.ValueInfoProto:
        dtype, rank = self._dtype_rank(name)
        return grid_parts.input_info(name, dtype, rank, self._shape_of)

    def _output(self, name: str) -> onnx.ValueInfoProto:
        declared = self.declared.get(name)
        if declared is not None:
            return declared
        dtype, rank = self._dtype_rank(name)
        return value_info(name, dtype, None if rank is None else (None,) * rank)

    def producers_model(
        self,
        outputs: Sequence[str],
        held: Callable[[str], bool],
        declare: Callable[[str], onnx.ValueInfoProto],
    ) -> onnx.ModelProto:
        """A graph of only the nodes ``outputs`` are computed from, back to what ``held``
        says is at hand (values the float reference keeps) and the graph's inputs; each of
        ``outputs`` declared as ``declare`` gives it. Every tensor of these nodes the float
        graph exposes stays an output here: ONNX Runtime fuses no node whose output is
        fetched, so the same kernels compute the same values as in the whole float graph."""
        wanted = set(outputs)
        order = sorted(self._computed_from(outputs, held))
        exposed = [o for i in order for o in self.nodes[i].output
                   if o and o not in wanted and o in self.declared]  # fmt: skip
        model = self.model(order, [*outputs, *dict.fromkeys(exposed)])
        model.graph.name = "bitlens_producers"
        for k, name in enumerate(outputs):
            model.graph.output[k].CopyFrom(declare(name))
        return model

    def head_model(self, layout: Layout, output: str) -> onnx.ModelProto:
        """The head's graph: its outputs are what the parts after it read, and ``output``
        where the head computes it."""
        later = {n for p in layout.parts for n in self._part_reads(p, output)}
        produced = self._produced(layout.head)
        outs = [n for n in dict.fromkeys(o for i in layout.head for o in self.nodes[i].output)
                if n in produced and (n in later or n == output)]  # fmt: skip
        return self.model(layout.head, outs)

    def part_model(self, part: int, output: str) -> onnx.ModelProto:
        """Grid part ``part``'s graph for ``output``: its outputs are what later parts read,
        and ``output`` where it is computed there."""
        nodes = self.part_nodes(part, output)
        later = {n for p in range(part + 1, len(self.grid)) for n in self._part_reads(p, output)}
        outs = [o for i in nodes for o in self.nodes[i].output if o and (o in later or o == output)]
        return self.model(nodes, list(dict.fromkeys(outs)))


def io_names(model: onnx.ModelProto) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A graph's input and output names (what chain.Chain is given for each part)."""
    g = model.graph
    return tuple(v.name for v in g.input), tuple(v.name for v in g.output)
