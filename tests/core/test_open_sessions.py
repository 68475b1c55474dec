"""Open + calibrate + first evaluation builds each session once (issue 11's open row)."""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, extremes, localerrors, reuse, running, structure
from bitlens.core.errors import EngineError
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.engine_models import small_cnn
from tests.core.test_engine_row_mixing import _feeds as _rows_feeds
from tests.core.test_engine_row_mixing import _model as _rows_model


def constants_first_cnn() -> onnx.ModelProto:
    """small_cnn with a Constant node ahead of its first conv, read by an Add between relu1
    and conv2 (paddle2onnx writes PP-OCRv4 rec so: 135 Constant nodes before its first
    conv)."""
    model = small_cnn()
    graph = model.graph
    at, conv2 = next((k, n) for k, n in enumerate(graph.node) if n.name == "conv2")
    conv2.input[0] = "a1"
    graph.node.insert(at, helper.make_node("Add", ["r1", "shift"], ["a1"], name="add1"))
    shift = numpy_helper.from_array(np.full((1, 8, 1, 1), 0.25, np.float32), "shift_value")
    graph.node.insert(0, helper.make_node("Constant", [], ["shift"], name="shift", value=shift))
    onnx.checker.check_model(model)
    return model


def _w8a8_both_ways(proto: onnx.ModelProto, setting: str, seed: int, before, after) -> list:
    """W8A8 evaluated on a calibrated engine with the attribute ``setting`` True, then on
    one with it False; ``before(engine, on)`` and ``after(engine, on)`` around each
    evaluation; the two evaluations."""
    loaded = from_proto(proto)
    data = Dataset.random(loaded.info, n=4, seed=seed)
    plan = Plan.preset(loaded.info, "W8A8")
    results = []
    for on in (True, False):
        engine = Engine(loaded, data, device="cpu")
        setattr(engine, setting, on)
        for _ in engine.calibrate("minmax"):
            pass
        before(engine, on)
        results.append(engine.evaluate(plan))
        after(engine, on)
        engine.close()
    return results


def test_first_evaluation_builds_the_whole_graph_once(monkeypatch) -> None:
    """The first layer's part starts after a Constant node and needs no kept value: the
    first W8A8 evaluation runs the whole graph's session (built on the side thread), not a
    second session of the same nodes; its numbers equal those of the straightforward runs
    (no kept values, every plan on the whole graph). The chain's parts built ahead on the
    side thread once the results are in (reuse.PrefixRuns._parts_ahead) are for the next
    structure's changes, not this run: only the evaluation's own builds count."""
    built: list[object] = []
    real = reuse.make_session

    def make_session(*args, **kwargs):
        if not threading.current_thread().name.startswith("bitlens-side"):
            built.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(reuse, "make_session", make_session)

    def after(engine: Engine, reuse_prefix: bool) -> None:
        if reuse_prefix:
            cuts = next(c for c in engine._cuts.values() if c is not None)
            assert cuts.start[cuts.order[0]] > 0  # the Constant node first
            assert not engine._tails and not built  # no session of its own for the part

    results = _w8a8_both_ways(constants_first_cnn(), "reuse_prefix", 2, lambda *_: None, after)
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
    evaluating = threading.Event()  # the float graph's build at calibration is not slowed
    real_whole, real_local = structure.make_session, localerrors.make_session

    def whole(*args, **kwargs):
        if evaluating.is_set() and threading.current_thread().name.startswith("bitlens-side"):
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

    def before(_engine: Engine, _overlap: bool) -> None:
        built.clear()
        local_built.clear()
        evaluating.set()

    def after(_engine: Engine, overlap: bool) -> None:
        evaluating.clear()
        if overlap:
            assert built == [("local", "MainThread"), ("whole", built[1][1])]
            assert built[1][1].startswith("bitlens-side")

    results = _w8a8_both_ways(small_cnn(), "overlap", 5, before, after)
    assert results[0] == results[1]


def test_min_max_on_two_threads_equal_those_in_turn(monkeypatch) -> None:
    """The float reference's checks and calibration ranges (extremes.py) with half the values
    on the run pool's thread equal those taken in turn: the same ranges, kept values and
    evaluation; a NaN is reported at the same tensor either way."""
    monkeypatch.setattr(extremes, "SPLIT_BYTES", 1)  # small_cnn's values are small
    threads: set[str] = set()
    real = extremes._of

    def of(values):
        threads.add(threading.current_thread().name)
        return real(values)

    monkeypatch.setattr(extremes, "_of", of)
    loaded = from_proto(small_cnn())
    data = Dataset.random(loaded.info, n=4, seed=7)
    got = []
    for split in (True, False):
        monkeypatch.setattr(extremes, "SPLIT", split)
        threads.clear()
        engine = Engine(loaded, data, device="cpu")
        for _ in engine.calibrate("minmax"):
            pass
        ref = engine._ensure_ref()
        values = {(t, i): ref.value(t, i) for t in ref for i in data.evaluation}
        got.append(
            (dict(engine._minmax), values, engine.evaluate(Plan.preset(loaded.info, "W8A8")))
        )
        assert any(t.startswith("bitlens-run") for t in threads) == split
        engine.close()
    (ranges, values, ev), (ranges2, values2, ev2) = got
    assert ranges == ranges2 and ranges
    assert values.keys() == values2.keys()
    assert all(np.array_equal(values[k], values2[k]) for k in values)
    assert ev == ev2
    bad = [{k: np.where(np.arange(v.size).reshape(v.shape) == 5, np.nan, v).astype(v.dtype)
            for k, v in feed.items()} for feed in data.samples]  # fmt: skip
    messages = []
    for split in (True, False):
        monkeypatch.setattr(extremes, "SPLIT", split)
        engine = Engine(loaded, Dataset.from_feeds(loaded.info, bad), device="cpu")
        with pytest.raises(EngineError) as err:
            for _ in engine.calibrate("minmax"):
                pass
        messages.append(str(err.value))
        engine.close()
    assert messages[0] == messages[1] and "NaN" in messages[0]


def test_the_float_session_builds_beside_the_float_weights(monkeypatch) -> None:
    """The float reference's session is built on the side thread while the main thread reads
    the float weights and the presets' placements: the same reference, ranges and
    evaluation as with everything in turn (Engine.overlap off)."""
    threads: list[str] = []
    real = structure.make_session

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(structure, "make_session", recording)
    loaded = from_proto(small_cnn())
    data = Dataset.random(loaded.info, n=4, seed=3)
    got = []
    for overlap in (True, False):
        engine = Engine(loaded, data, device="cpu")
        engine.overlap = overlap
        threads.clear()
        list(engine.calibrate("minmax"))
        assert len(threads) == 1  # the float graph's session, once
        assert threads[0].startswith("bitlens-side") == overlap
        ref = engine._ensure_ref()
        values = {(t, i): ref.value(t, i) for t in ref for i in data.evaluation}
        got.append((engine._minmax, values, engine.evaluate(Plan.preset(loaded.info, "W8A8"))))
        engine.close()
    (minmax, values, ev), (minmax2, values2, ev2) = got
    assert minmax == minmax2 and ev == ev2 and values.keys() == values2.keys()
    assert all(np.array_equal(values[k], values2[k]) for k in values)
