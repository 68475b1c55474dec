"""The float graph's session declares only the tensors the float reference fetches
(engine/float_outputs.py), with ONNX Runtime's fusions that would compute a subgraph another
way left out: the kept values, the ranges (those measured later too) and the evaluations
equal bit for bit those of the session declaring every float tensor, as before."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, float_outputs
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.builders import bias, init, model, weights

D = 32


def _svtr_block() -> onnx.ModelProto:
    """A MatMul + Add, a decomposed LayerNorm (as paddle2onnx writes PP-OCRv4 rec's SVTR
    blocks: ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul, Add) and x *
    sigmoid(1.702 x), then a MatMul. With only the layers' outputs declared, ONNX Runtime
    fuses the LayerNorm into LayerNormalization and the last part into QuickGelu."""
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["mm0"]),
        helper.make_node("Add", ["mm0", "b0"], ["h"]),
        helper.make_node("ReduceMean", ["h"], ["mu"], axes=[-1]),
        helper.make_node("Sub", ["h", "mu"], ["dev"]),
        helper.make_node("Pow", ["dev", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["dev", "sd"], ["nrm"]),
        helper.make_node("Mul", ["nrm", "gamma"], ["sc"]),
        helper.make_node("Add", ["sc", "beta"], ["ln"]),
        helper.make_node("Mul", ["ln", "k"], ["kx"]),
        helper.make_node("Sigmoid", ["kx"], ["sg"]),
        helper.make_node("Mul", ["ln", "sg"], ["act"]),
        helper.make_node("MatMul", ["act", "w1"], ["y"]),
    ]
    rng = np.random.default_rng(3)
    inits = [
        init("w0", weights((D, D), seed=1, channel_axis=1)),
        init("b0", bias(D, seed=2)),
        init("two", np.array(2.0, np.float32)),
        init("eps", np.array(1e-5, np.float32)),
        init("gamma", (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)),
        init("beta", bias(D, seed=4)),
        init("k", np.array(1.702, np.float32)),
        init("w1", weights((D, 8), seed=5, channel_axis=1)),
    ]
    graph = helper.make_graph(
        nodes,
        "svtr_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 40, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 40, 8])],
        inits,
    )
    return model(graph)


def _results(proto: onnx.ModelProto) -> tuple[dict, dict, list]:
    """Kept values, ranges (those left for later measured too) and the W8A8 and float
    plans' evaluations of an engine's float reference."""
    loaded = from_proto(proto)
    engine = Engine(loaded, Dataset.random(loaded.info, n=4, seed=7, dims={"N": 2}), device="cpu")
    try:
        list(engine.calibrate("minmax"))
        ref = engine._ref
        kept = {
            (n, i): ref.value(n, i).copy()
            for n in ref.types
            for i in range(4)
            if (n, i) in engine._store
        }
        engine._measure_later(list(engine._minmax_later))
        evals = [
            engine.evaluate(Plan.preset(loaded.info, "W8A8")),
            engine.evaluate(Plan(loaded.info)),
        ]
        return kept, dict(engine._minmax), evals
    finally:
        engine.close()


def _same(a: tuple, b: tuple) -> bool:
    kept_a, kept_b = a[0], b[0]
    return (
        kept_a.keys() == kept_b.keys()
        and all(np.array_equal(kept_a[k], kept_b[k]) for k in kept_a)
        and a[1] == b[1]
        and a[2] == b[2]
    )


def test_the_float_session_declares_only_what_the_reference_fetches() -> None:
    """On the old code the session declared every float tensor (16 here)."""
    loaded = from_proto(_svtr_block())
    engine = Engine(loaded, Dataset.random(loaded.info, n=2, seed=7, dims={"N": 2}), device="cpu")
    try:
        list(engine.calibrate("minmax"))
        sim, sess = engine._session_for({})
        declared = {o.name for o in sess.get_outputs()}
        every = {v.name for v in sim.model.graph.output}
        assert "mu" in every and "mu" not in declared  # a LayerNorm step no plan reads
        assert {"mm0", "act", "y"} <= declared  # a layer output, a layer input, the model output
        assert len(declared) < len(every)
    finally:
        engine.close()


def test_fewer_outputs_keep_every_value(monkeypatch) -> None:
    """Kept values, ranges and evaluations equal the every-tensor session's bit for bit;
    without the fusions left out they do not (the model exercises them)."""
    proto = _svtr_block()
    monkeypatch.setattr(float_outputs, "FEWER", False)
    every = _results(proto)
    monkeypatch.setattr(float_outputs, "FEWER", True)
    assert _same(_results(proto), every)
    monkeypatch.setattr(float_outputs, "VALUE_FUSIONS", ())
    assert not _same(_results(proto), every)


@pytest.mark.parametrize("fewer", [False, True])
def test_a_nan_is_named_as_before(monkeypatch, fewer) -> None:
    """A NaN from the LayerNorm on is named where a kept value first holds it (the layer's
    input), with fewer outputs as with every one."""
    proto = _svtr_block()
    for t in proto.graph.initializer:
        if t.name == "gamma":
            values = onnx.numpy_helper.to_array(t).copy()
            values[3] = np.nan
            t.CopyFrom(onnx.numpy_helper.from_array(values, "gamma"))
    monkeypatch.setattr(float_outputs, "FEWER", fewer)
    loaded = from_proto(proto)
    engine = Engine(loaded, Dataset.random(loaded.info, n=2, seed=7, dims={"N": 2}), device="cpu")
    try:
        with pytest.raises(Exception, match="NaN or infinite values in 'act' on data sample 0"):
            list(engine.calibrate("minmax"))
    finally:
        engine.close()
