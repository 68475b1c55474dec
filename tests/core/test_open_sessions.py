"""Open + calibrate + first evaluation builds each session once (issue 11's open row)."""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, localerrors, reuse, running, structure
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.engine_models import IR_VERSION, small_cnn
from tests.core.test_engine_row_mixing import _feeds as _rows_feeds
from tests.core.test_engine_row_mixing import _model as _rows_model


def constants_first_cnn(seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv(W1) -> Relu -> Add(shift) -> Conv(W2) -> Relu -> GAP -> Flatten ->
    Gemm(W3) -> y[N,10], where ``shift`` is a Constant node ahead of the first conv (as
    paddle2onnx writes PP-OCRv4 rec: 135 Constant nodes before its first conv)."""
    rng = np.random.default_rng(seed)
    inits = {
        "W1": rng.normal(0, 0.3, (8, 3, 3, 3)),
        "W2": rng.normal(0, 0.2, (16, 8, 3, 3)),
        "W3": rng.normal(0, 0.3, (10, 16)),
    }
    shift = numpy_helper.from_array(np.full((1, 8, 1, 1), 0.25, np.float32), "shift_value")
    nodes = [
        helper.make_node("Constant", [], ["shift"], name="shift", value=shift),
        helper.make_node("Conv", ["x", "W1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Add", ["r1", "shift"], ["a1"], name="add1"),
        helper.make_node("Conv", ["a1", "W2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W3"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes,
        "constants_first_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def test_first_evaluation_builds_the_whole_graph_once(monkeypatch) -> None:
    """The first layer's part starts after a Constant node and needs no kept value: the
    first W8A8 evaluation runs the whole graph's session (built on the side thread), not a
    second session of the same nodes; its numbers equal those of the straightforward runs
    (no kept values, every plan on the whole graph)."""
    built: list[object] = []
    real = reuse.make_session

    def make_session(*args, **kwargs):
        built.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(reuse, "make_session", make_session)
    loaded = from_proto(constants_first_cnn())
    data = Dataset.random(loaded.info, n=4, seed=2)
    plan = Plan.preset(loaded.info, "W8A8")
    results = []
    for reuse_prefix in (True, False):
        engine = Engine(loaded, data, device="cpu")
        engine.reuse_prefix = reuse_prefix
        for _ in engine.calibrate("minmax"):
            pass
        cuts = next(c for c in engine._cuts.values() if c is not None) if reuse_prefix else None
        results.append(engine.evaluate(plan))
        if reuse_prefix:
            assert cuts is not None and cuts.start[cuts.order[0]] > 0  # the Constant first
            assert not engine._tails and not built  # no session of its own for the part
        engine.close()
    assert results[0] == results[1]


@pytest.mark.parametrize("mix", [False, True])
def test_rows_mixing_is_read_from_the_float_references_first_run(mix, monkeypatch) -> None:
    """Whether the model mixes rows of a joined feed (row_mixing.py) is answered by the float
    reference's first run, not by a run of the feed's first two units before it: one run of
    the first unit alone (row_cap.py) and one per feed when rows stand alone. The data, the
    reference and the evaluations equal those of the check run first (keep_rows_apart, as
    the CLI calls it), for a model whose rows stand alone and for one that mixes them."""
    proto = _rows_model(mix)
    model = from_proto(proto)
    feeds = _rows_feeds(4)
    runs: list[int] = []
    real = running.Runs._run

    def counted(sess, fetch, feed):
        runs.append(1)
        return real(sess, fetch, feed)

    monkeypatch.setattr(running.Runs, "_run", staticmethod(counted))
    got = []
    for checked_first in (True, False):
        data = Dataset.from_feeds(model.info, feeds)
        assert [len(p) for p in data.parts] == [2, 2]  # two joined feeds of two units
        engine = Engine(model, data, device="cpu")
        if checked_first:
            engine.keep_rows_apart()
        runs.clear()
        list(engine.prepare())
        if not checked_first and not mix:
            assert len(runs) == 1 + len(data.samples)  # the unit alone, then each feed
        ref = engine._ensure_ref()
        values = {(t, i): ref.value(t, i) for t in ref for i in engine.data.evaluation}
        shapes = [s["x"].shape for s in engine.data.samples]
        got.append(
            (engine.data.rows_mix, shapes, values, engine.evaluate(Plan.preset(model.info, "W8A8")))
        )
        engine.close()
    (mixed, shapes, values, ev), (mixed2, shapes2, values2, ev2) = got
    assert mixed == mixed2 == mix and shapes == shapes2
    assert values.keys() == values2.keys()
    assert all(np.array_equal(values[k], values2[k]) for k in values)
    assert ev == ev2


def test_local_errors_run_while_the_side_thread_builds_the_whole_session(monkeypatch) -> None:
    """A first evaluation whose runs wait for the whole graph's session, still being built on
    the side thread: the main thread builds the local errors' session and runs them
    meanwhile (they need only the float reference), and the evaluation equals one done in
    turn (Engine.overlap off)."""
    monkeypatch.setattr(localerrors, "BULK_LOCAL_MIN", 2)  # small_cnn's 3 layers
    built: list[tuple[str, str]] = []
    local_built = threading.Event()
    real_whole, real_local = structure.make_session, localerrors.make_session

    def whole(*args, **kwargs):
        if threading.current_thread().name.startswith("bitlens-side"):
            local_built.wait(timeout=5)  # a slow build: the main thread is free meanwhile
        built.append(("whole", threading.current_thread().name))
        return real_whole(*args, **kwargs)

    def local(*args, **kwargs):
        sess = real_local(*args, **kwargs)
        built.append(("local", threading.current_thread().name))
        local_built.set()
        return sess

    monkeypatch.setattr(structure, "make_session", whole)
    monkeypatch.setattr(localerrors, "make_session", local)
    loaded = from_proto(small_cnn())
    data = Dataset.random(loaded.info, n=4, seed=5)
    plan = Plan.preset(loaded.info, "W8A8")
    results = []
    for overlap in (True, False):
        engine = Engine(loaded, data, device="cpu")
        engine.overlap = overlap
        for _ in engine.calibrate("minmax"):
            pass
        built.clear()
        local_built.clear()
        results.append(engine.evaluate(plan))
        if overlap:
            assert built == [("local", "MainThread"), ("whole", built[1][1])]
            assert built[1][1].startswith("bitlens-side")
        engine.close()
    assert results[0] == results[1]
