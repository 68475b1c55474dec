"""The sweep runs each layer's suffix as a head of its own chained to parts every layer
shares (engine/suffix.py), and its runs go as a sliding window over layers, formats and
feeds (engine/sweep.py): the entries equal those of one session per suffix, of the whole
model, and of one run at a time."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, chain, parts, sweep
from bitlens.core.model.loader import from_proto
from tests.builders import init, model, weights
from tests.core.test_engine_scale import _close, _run_sweep


def skips_and_side_branch(depth: int = 24):
    """x -> (MatMul W_k -> Relu) x depth, every third layer adding the output of three
    layers back (a skip across the parts' grid points, read from the float reference by
    the parts of later layers); y = MatMul(h, Wy) + a side branch from h1 (Tanh, MatMul
    Ws) placed last in the graph: the parts of a late layer would run that branch, which
    the layer does not reach, more than suffix.EXTRA of its few nodes, so a late layer's
    head is its whole suffix."""
    nodes, inits = [], []
    h = "x"
    outs = []
    for k in range(depth):
        inits.append(init(f"W{k}", weights((8, 8), seed=k)))
        nodes.append(helper.make_node("MatMul", [h, f"W{k}"], [f"m{k}"], name=f"mm{k}"))
        nodes.append(helper.make_node("Relu", [f"m{k}"], [f"r{k}"], name=f"relu{k}"))
        h = f"r{k}"
        if k >= 3 and k % 3 == 0:
            nodes.append(helper.make_node("Add", [h, outs[k - 3]], [f"s{k}"], name=f"skip{k}"))
            h = f"s{k}"
        outs.append(h)
    inits += [init("Wy", weights((8, 4), seed=50)), init("Ws", weights((8, 4), seed=51))]
    nodes.append(helper.make_node("MatMul", [h, "Wy"], ["main"], name="mm_y"))
    side = outs[1]
    for n, op in enumerate(("Tanh",)):
        nodes.append(helper.make_node(op, [side], [f"side{n}"], name=f"side_op{n}"))
        side = f"side{n}"
    nodes.append(helper.make_node("MatMul", [side, "Ws"], ["side_y"], name="mm_side"))
    nodes.append(helper.make_node("Add", ["main", "side_y"], ["y"], name="join"))
    g = helper.make_graph(
        nodes,
        "skips_and_side_branch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    return model(g)


def _engine(n: int = 6) -> Engine:
    loaded = from_proto(skips_and_side_branch())
    data = Dataset.random(loaded.info, n=n, seed=7, dims={"N": 3})
    return Engine(loaded, data, device="cpu")


def test_suffixes_through_shared_parts_equal_one_session_per_suffix(monkeypatch) -> None:
    monkeypatch.setattr(parts, "PARTS", 4)
    engine = _engine()
    built: list[int] = []
    real = sweep.make_session

    def counting(m, *a, **k):
        built.append(len(m.graph.node))
        return real(m, *a, **k)

    monkeypatch.setattr(sweep, "make_session", counting)
    monkeypatch.setattr(sweep, "SUFFIX_SESSIONS", 100)  # keep every runner to look at
    shared = _run_sweep(engine)
    runners = {name: r for name, (r, _) in engine._suffixes.items()}
    chained = [n for n, r in runners.items() if isinstance(r, chain.Chain)]
    assert "mm0" in chained and len(runners["mm0"].parts) >= 3
    # mm20's parts would run the side branch (2 nodes) for a suffix of 11: one session
    assert "mm20" in runners and not isinstance(runners["mm20"], chain.Chain)
    # mm7's last part runs the side branch from r1, which only the float reference holds
    assert "mm7" in chained and "r1" in engine._suffixes["mm7"][1]
    nodes_shared = sum(built)

    built.clear()
    monkeypatch.setattr(parts, "PARTS", 1)  # no grid: one session per layer's suffix
    own = _run_sweep(_engine())
    assert sum(built) > 1.5 * nodes_shared  # the parts are built once, not once per layer
    assert shared.keys() == own.keys()
    for key in shared:  # the same nodes and kernels, only cut into sessions: equal
        assert shared[key].output == own[key].output, key

    whole = _run_sweep(_engine(), suffix_runs=False)
    for key in shared:
        _close(shared[key].output, whole[key].output, rel=1e-5)


def test_layouts_read_what_no_earlier_session_of_the_chain_computes(monkeypatch) -> None:
    """Every input of a layer's head and parts is a graph input, computed by an earlier
    session of its chain, or among the layout's boundary (fed from the float reference)."""
    monkeypatch.setattr(parts, "PARTS", 4)
    engine = _engine()
    sim, _ = engine._session_for({})
    graph = engine._suffix_graph(sim)
    assert len(graph.grid) >= 3
    inputs = {v.name for v in sim.model.graph.input}
    checked = 0
    for layer in engine.info.layers:
        layout = graph.layout(layer.outputs[0], "y", [w.name for w in layer.weights])
        assert layout is not None
        models = [graph.head_model(layout, "y")]
        models += [graph.part_model(p, "y") for p in layout.parts]
        have = set(inputs) | set(layout.boundary)
        for m in models:
            assert {v.name for v in m.graph.input} <= have, layer.name
            have |= {v.name for v in m.graph.output}
        assert "y" in have
        checked += bool(layout.parts)
    assert checked >= 3


def test_the_sliding_window_of_runs_equals_one_run_at_a_time(monkeypatch) -> None:
    """Runs of the next layer start beside the last of this one; with several feeds, and
    with layers too large to prepare ahead (all runs measured first): the entries equal
    those of one run at a time."""
    two = _run_sweep(_engine(n=9))
    monkeypatch.setattr(sweep, "SWEEP_WINDOW_BYTES", 1)  # one format at a time, no read-ahead
    large = _run_sweep(_engine(n=9))
    monkeypatch.setattr(sweep, "SWEEP_WORKERS", 1)
    one = _run_sweep(_engine(n=9))
    assert two == one == large
    assert all(np.isfinite(e.output.mse) for e in two.values())


def test_the_suffix_graph_reads_the_float_graph_the_cuts_read(monkeypatch) -> None:
    """The sweep's suffix graph takes the float graph's index from the engine's cuts of it
    (found when the float graph was built) instead of reading its nodes again; the entries
    equal those of a suffix graph that reads them itself."""
    reads: list[int] = []
    real = parts.graph_index

    def counted(sim):
        reads.append(len(sim.graph.node))
        return real(sim)

    monkeypatch.setattr(parts, "graph_index", counted)
    engine = _engine()
    for _ in engine.calibrate("minmax"):
        pass
    before = len(reads)
    given = _run_sweep(engine)
    assert len(reads) == before  # the float graph's cuts, read at calibration, served
    monkeypatch.setattr(sweep, "FLOAT_KEY", ("not a structure",))  # no cuts found: it reads
    again = _run_sweep(_engine())
    assert len(reads) > before
    assert given == again
