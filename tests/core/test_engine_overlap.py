"""Work the engine does on its side thread while the main thread quantizes and runs
(Runs._aside: the whole graph's session, the local errors' session, the weight errors)
gives the very numbers of doing each in turn, and an error there reaches the caller."""

from __future__ import annotations

import threading

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import (
    Engine,
    localerrors,
    output_metrics,
    reuse,
    structure,
    weightfeeds,
)
from bitlens.core.errors import EngineError
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.engine_models import small_cnn, w8a8_then_each_layer_int4
from tests.core.test_engine_same_structure import residual_cnn


def _recording(monkeypatch, module, label: str, seen: list[tuple[str, str]]) -> None:
    real = module.make_session

    def make_session(*args, **kwargs):
        seen.append((label, threading.current_thread().name))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "make_session", make_session)


def _calibrated(loaded, data: Dataset, overlap: bool) -> Engine:
    engine = Engine(loaded, data, device="cpu")
    engine.overlap = overlap
    for _ in engine.calibrate("minmax"):
        pass
    return engine


@pytest.mark.parametrize(("build", "dims"), [(small_cnn, {}), (residual_cnn, {"N": 3})])
def test_side_thread_gives_the_numbers_of_each_in_turn(build, dims, monkeypatch) -> None:
    """small_cnn / residual_cnn (tests/core): W8A8, then each layer at int4, then W4A8, on
    one engine that builds aside and one that builds in turn."""
    monkeypatch.setattr(weightfeeds, "POOL_MIN_BYTES", 1)  # their weights are small
    monkeypatch.setattr(localerrors, "BULK_LOCAL_MIN", 2)  # and their layers few
    seen: list[tuple[str, str]] = []
    _recording(monkeypatch, structure, "whole", seen)
    _recording(monkeypatch, localerrors, "local", seen)
    real_errors = weightfeeds.WeightFeeds._weight_errors_of

    def errors_of(self, *args):
        seen.append(("weight errors", threading.current_thread().name))
        return real_errors(self, *args)

    monkeypatch.setattr(weightfeeds.WeightFeeds, "_weight_errors_of", errors_of)
    loaded = from_proto(build())
    info = loaded.info
    data = Dataset.random(info, n=6, seed=3, dims=dims)
    plans = w8a8_then_each_layer_int4(info)
    results = {}
    where = {}
    for overlap in (True, False):
        engine = _calibrated(loaded, data, overlap)
        seen.clear()
        results[overlap] = [engine.evaluate(p) for p in plans]
        where[overlap] = list(seen)
        engine.close()
    assert results[True] == results[False]
    side = {label for label, thread in where[True] if thread.startswith("bitlens-side")}
    assert side == {"whole", "local", "weight errors"}  # the first evaluation's, at least
    assert not any(thread.startswith("bitlens-side") for _, thread in where[False])


def test_an_error_on_the_side_thread_reaches_the_caller(monkeypatch) -> None:
    loaded = from_proto(small_cnn())
    data = Dataset.random(loaded.info, n=4, seed=1)
    engine = Engine(loaded, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass

    def refuse(*_args, **_kwargs):
        assert threading.current_thread().name.startswith("bitlens-side")
        raise EngineError("ONNX Runtime cannot build a session for this model: refused")

    monkeypatch.setattr(structure, "make_session", refuse)
    with pytest.raises(EngineError, match="refused"):
        engine.evaluate(Plan.preset(loaded.info, "W8A8"))
    engine.close()


def test_parts_built_ahead_leave_a_new_structure_only_its_changed_part(monkeypatch) -> None:
    """After W8A8 ran whole, the side thread builds its chain's part sessions
    (reuse.PrefixRuns._parts_ahead); the first layer at int4 (a new structure: the target's
    quantizers move) then builds one session, the part holding the change, where it built
    every part of the chain; the evaluations equal an engine that builds nothing ahead."""
    made: list[str] = []
    real = reuse.make_session
    monkeypatch.setattr(
        reuse, "make_session", lambda *a, **k: (made.append("part"), real(*a, **k))[1]
    )
    loaded = from_proto(residual_cnn())
    info = loaded.info
    data = Dataset.random(info, n=6, seed=3, dims={"N": 3})
    base = Plan.preset(info, "W8A8")
    first = base.with_choices({info.layers[0].name: LayerChoice.of("int4 sym ch")})
    results = {}
    for overlap in (True, False):
        engine = _calibrated(loaded, data, overlap)
        w8a8 = engine.evaluate(base)
        if overlap:
            assert engine._side_executor is not None
            engine._side_executor.submit(lambda: None).result()  # the jobs before it ran
            assert len(engine._part_sessions) == len(made) > 1
        made.clear()
        results[overlap] = (w8a8, engine.evaluate(first))
        assert len(made) == (1 if overlap else 4)  # residual_cnn's chain: 4 parts
        made.clear()
        engine.close()
    assert results[True] == results[False]


def test_a_reevaluations_local_and_output_errors_run_aside(monkeypatch) -> None:
    """A one-layer change's local error (its one-layer session built and run) goes on the side
    thread while the plan runs (LocalErrors._local_errors_aside), and the outputs' errors
    while the layer outputs are measured (OutputMetrics._output_results), not after them;
    the evaluations equal an engine that does each in turn. One that waited behind other
    side jobs is done where it is needed."""
    where: list[str] = []
    outputs: list[str] = []
    real = localerrors.LocalErrors._local_errors
    real_outputs = output_metrics.OutputMetrics._output_results

    def local_errors(self, *args, **kwargs):
        where.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    def output_results(self, *args, **kwargs):
        outputs.append(threading.current_thread().name)
        return real_outputs(self, *args, **kwargs)

    monkeypatch.setattr(localerrors.LocalErrors, "_local_errors", local_errors)
    monkeypatch.setattr(output_metrics.OutputMetrics, "_output_results", output_results)
    loaded = from_proto(residual_cnn())
    info = loaded.info
    data = Dataset.random(info, n=6, seed=3, dims={"N": 3})
    base = Plan.preset(info, "W8A8")
    changes = [
        base.with_choices({la.name: LayerChoice.of(f"int{b} sym ch")}) for la in info.layers
        for b in (4, 2)
    ]  # fmt: skip
    results = {}
    for overlap in (True, False):
        engine = _calibrated(loaded, data, overlap)
        engine.evaluate(base)
        if overlap:
            engine._side_executor.submit(lambda: None).result()  # parts built ahead: done
        where.clear()
        outputs.clear()
        results[overlap] = [engine.evaluate(p) for p in changes]
        assert len(where) == len(outputs) == len(changes)
        for done in (where, outputs):
            aside = [t for t in done if t.startswith("bitlens-side")]
            # each goes aside unless the main thread reached it first (a starved side thread)
            assert (len(aside) >= 1) if overlap else not aside, done
        engine.close()
    assert results[True] == results[False]


def _with_prologue() -> onnx.ModelProto:
    """residual_cnn with a Constant before its first layer (read by a Mul before its last):
    a Paddle export's first Conv comes after hundreds of such nodes (PP-OCRv4 rec: 135), so
    its first cut starts past node 0."""
    proto = residual_cnn()
    g = proto.graph
    scale = helper.make_node(
        "Constant", [], ["scale"], value=numpy_helper.from_array(np.array([0.5], np.float32))
    )
    last = g.node[-1]
    last.input[0] = "sr_scaled"
    nodes = [scale, *g.node[:-1], helper.make_node("Mul", ["sr", "scale"], ["sr_scaled"]), last]
    del g.node[:]
    g.node.extend(nodes)
    return proto


def test_parts_are_built_ahead_when_nodes_precede_the_first_layer() -> None:
    """Before, such a model's first evaluation ran as a tail from the first cut (no whole
    session, no parts ahead) and building its parts from node 0 failed unseen on the side
    thread; now W8A8 runs whole and its chain's parts are built ahead, and the changes after
    it equal the straightforward engine's (no kept values, whole graphs)."""
    loaded = from_proto(_with_prologue())
    info = loaded.info
    data = Dataset.random(info, n=6, seed=3, dims={"N": 3})
    plans = w8a8_then_each_layer_int4(info, w4a8=False)
    base = plans[0]
    engine = _calibrated(loaded, data, True)
    got = [engine.evaluate(base)]
    engine._side_executor.submit(lambda: None).result()  # the jobs before it ran
    assert len(engine._part_sessions) > 1
    got += [engine.evaluate(p) for p in plans[1:]]
    straight = _calibrated(loaded, data, False)
    straight.reuse_prefix = False
    assert [straight.evaluate(p) for p in plans] == got
