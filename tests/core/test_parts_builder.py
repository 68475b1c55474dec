"""One builder cuts a simulation graph into parts for both chains of part sessions
(engine/parts.py): the sweep's shared parts (suffix.py) and re-evaluation's parts from a
layer's cut (chain.py over prefix.build_tail). What a part holds is checked against the
protobuf read directly (for re-evaluation's tails: tests/core/test_sim_build_cache.py),
and a fix made in the builder holds for both callers."""

from __future__ import annotations

from onnx import helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, parts
from bitlens.core.engine.graphs import node_reads
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.builders import bias, init, weights
from tests.core.test_sweep_parts import _engine
from tests.core.test_sweep_shape_inputs import resize_to_computed_sizes


def _needed(nodes, output: str) -> set[str]:
    """Names of the nodes ``output`` is computed from, walking the node list backwards."""
    want, names = {output}, set()
    for n in reversed(nodes):
        if want.intersection(n.output):
            names.add(n.name)
            want.update(node_reads(n))
    return names


def test_sweep_parts_hold_the_nodes_their_output_needs_from_their_grid_point(
    monkeypatch,
) -> None:
    monkeypatch.setattr(parts, "PARTS", 4)
    engine = _engine()
    sim, _ = engine._session_for({})
    graph = engine._suffix_graph(sim)
    nodes = list(sim.model.graph.node)
    needed = _needed(nodes, "y")
    edges = [*graph.grid, len(nodes)]
    assert len(graph.grid) == 3
    for p in range(len(graph.grid)):
        got = graph.part_model(p, "y").graph
        inside = [n for n in nodes[edges[p] : edges[p + 1]] if n.name in needed]
        assert [n.name for n in got.node] == [n.name for n in inside]
        made = {o for n in inside for o in n.output}
        read = [r for n in inside for r in node_reads(n) if r not in made]
        weights = [t.name for t in sim.model.graph.initializer if t.name in read]
        fed = [v.name for v in sim.model.graph.input if v.name in read]
        assert [t.name for t in got.initializer] == weights
        assert [v.name for v in got.input] == fed + list(
            dict.fromkeys(r for r in read if r not in weights and r not in fed)
        )


def shape_arithmetic_across_a_cut():
    """test_sweep_shape_inputs' Resize sized by Shape arithmetic, with a first layer convA
    before conv0 (x -> convA -> conv0 -> ... -> conv1): the int64 ``hw``, computed from
    x's Shape before conv0, crosses conv0's cut."""
    m = resize_to_computed_sizes()
    g = m.graph
    conv0 = next(n for n in g.node if n.name == "conv0")
    conv0.input[0] = "a"
    g.node.insert(0, helper.make_node("Conv", ["x", "wa", "ba"], ["a"], name="convA", pads=[1] * 4))
    g.initializer.extend([init("wa", weights((4, 4, 3, 3), seed=5)), init("ba", bias(4, seed=6))])
    return m


def test_reevaluation_runs_from_a_cut_that_shape_arithmetic_crosses() -> None:
    """conv0 at int4 (a new structure on ort-cpu) runs from conv0's cut, which ``hw``
    crosses. Declared of unknown length there, ONNX Runtime refused the part ("Number of
    elements of input 'sizes' (0)"), as it refused the sweep's suffix before; the part
    builder now declares integer inputs by their values' dims for both."""
    m = from_proto(shape_arithmetic_across_a_cut())
    data = Dataset.random(m.info, n=4, dims={"N": 1}, seed=2)
    base = Plan.preset(m.info, "W8A8")
    plans = [base] + [
        base.with_choices({name: LayerChoice.of(fmt, "uint8 asym")})
        for name, fmt in (("conv0", "int4 sym ch"), ("conv1", "int2 sym ch"))
    ]
    fast = Engine(m, data, device="cpu")
    drain(fast.calibrate("minmax"))
    got = [fast.evaluate(p) for p in plans]
    assert any(name == "conv0" for (_, name) in fast._tails)  # ran from conv0's cut
    assert fast._prefix_values.int_shapes["hw"] == (2,)
    slow = Engine(m, data, device="cpu")
    slow.reuse_prefix = False
    drain(slow.calibrate("minmax"))
    assert got == [slow.evaluate(p) for p in plans]
    sweep = {e.layer: e.output for e in drain(fast.sweep(["int4 sym ch"]))}
    assert set(sweep) == {"convA", "conv0", "conv1"}
