"""Simulation graphs built from kept quantizer protos (rewrite._input_nodes, _target_nodes,
_param_input) and read once for their cuts (prefix.GraphIndex) equal freshly built ones."""

from __future__ import annotations

import numpy as np

from bitlens.core.engine import Engine, prefix, rewrite
from bitlens.core.engine.graphs import node_reads
from bitlens.core.model.graph import is_constant_node
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.test_targets import silu_net


def _clear() -> None:
    for f in (rewrite._input_nodes, rewrite._target_nodes, rewrite._param_input):
        f.cache_clear()


def test_kept_quantizer_protos_build_the_same_graphs() -> None:
    loaded = from_proto(silu_net())
    engine = Engine(loaded, None, device="cpu")
    base = Plan.preset(loaded.info, "W8A8")
    names = [la.name for la in loaded.info.layers]
    plans = [
        base,
        base.with_choices({names[1]: LayerChoice.of("int4 sym ch", "uint8 asym")}),
        base.with_choices({names[2]: LayerChoice.of("int8 sym ch", "int8 sym")}),
        base.with_target("none"),
    ]

    def build(plan: Plan) -> bytes:
        kinds, tensors, skip = engine._structure_of(plan)
        sim = rewrite.build_sim(loaded.graph_proto, loaded.info, kinds, tensors, skip=skip)
        return sim.model.SerializeToString(deterministic=True)

    _clear()
    fresh = []
    for plan in plans:
        fresh.append(build(plan))
        _clear()
    # with the protos kept from earlier builds, in another order and twice over
    pairs = list(zip(plans, fresh, strict=True))
    for plan, want in [*pairs, *reversed(pairs)]:
        assert build(plan) == want


def _tail_parts(sim, start, end) -> tuple[list[bytes], list[str], list[str], list[str]]:
    """What a tail from ``start`` to ``end`` holds, read from the protobuf directly: its
    nodes (the Constant nodes it reads first), graph inputs, initializers and outputs."""
    g = sim.graph
    nodes = list(g.node)
    tail = nodes[start:end]
    wanted = {name for n in tail for name in node_reads(n)}
    produced = {o for n in tail for o in n.output}
    constants = [n for n in nodes[:start] if is_constant_node(n) and n.output[0] in wanted]
    return (
        [n.SerializeToString() for n in [*constants, *tail]],
        [v.name for v in g.input if v.name in wanted],
        [t.name for t in g.initializer if t.name in wanted],
        [v.name for v in g.output if v.name in produced],
    )


def test_tails_read_from_the_index_equal_tails_read_from_the_graph() -> None:
    loaded = from_proto(silu_net())
    engine = Engine(loaded, None, device="cpu")
    plan = Plan.preset(loaded.info, "W8A8")
    kinds, tensors, skip = engine._structure_of(plan)
    sim = rewrite.build_sim(loaded.graph_proto, loaded.info, kinds, tensors, skip=skip)
    cuts = prefix.find_cuts(sim.model, loaded.info, engine._positions)
    assert cuts is not None and cuts.graph is not None
    types = {t: (np.dtype("float32"), 4, None) for t in cuts.tensors}
    starts = sorted(set(cuts.start.values()))
    for s, e in zip(starts, [*starts[1:], None], strict=True):
        name = next(n for n, v in cuts.start.items() if v == s)
        b = cuts.boundary[name]
        got = prefix.build_tail(sim.model, s, b, types, end=e, index=cuts.graph).graph
        nodes, inputs, inits, outputs = _tail_parts(sim.model, s, e)
        assert [n.SerializeToString() for n in got.node] == nodes
        assert [v.name for v in got.input] == [*inputs, *b]
        assert [t.name for t in got.initializer] == inits
        assert [v.name for v in got.output] == outputs
