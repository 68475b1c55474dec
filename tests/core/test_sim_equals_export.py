"""The engine's simulation of a plan computes what its exported file computes, both run with
no graph optimization (ORT_DISABLE_ALL), bit for bit.

The export stores an integer-kernel layer's bias as int32 at scale s_x * s_w (what QGemm,
QLinearConv and MatMulIntegerToFloat take); the engine used to feed the float bias, so on
khmersm's transformer its W8A8 output differed from the file's by 0.0022 relative (a 1e-5
bias rounding at the first linear layer flipped activation codes downstream).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.engine.rewrite import shared_biases
from bitlens.core.export.exporter import export
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests import builders
from tests.core.export_models import random_feeds


def linear_conv_net() -> onnx.ModelProto:
    """x[1,4,6,6] -> Conv(8, bias) -> Relu -> Flatten -> MatMul + Add (a PyTorch Linear, with
    a float Cast between as in open_nsfw's head) -> Relu -> Gemm(bias) -> y[1,10]: a bias on
    each kind of integer-kernel layer."""
    rng = np.random.default_rng(3)
    inits = [
        builders.init("cw", rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)),
        builders.init("cb", rng.normal(0, 0.2, 8).astype(np.float32)),
        builders.init("mw", rng.normal(0, 0.1, (128, 16)).astype(np.float32)),
        builders.init("mb", rng.normal(0, 0.2, 16).astype(np.float32)),
        builders.init("gw", rng.normal(0, 0.3, (10, 16)).astype(np.float32)),
        builders.init("gb", rng.normal(0, 0.2, 10).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[0, 0, 0, 0]),
        helper.make_node("Relu", ["c"], ["cr"], name="relu0"),
        helper.make_node("Flatten", ["cr"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "mw"], ["m"], name="linear"),
        helper.make_node("Cast", ["m"], ["mc"], name="linear_cast", to=TensorProto.FLOAT),
        helper.make_node("Add", ["mc", "mb"], ["ma"], name="linear_bias"),
        helper.make_node("Relu", ["ma"], ["mr"], name="relu1"),
        helper.make_node("Gemm", ["mr", "gw", "gb"], ["y"], name="head", transB=1),
    ]
    io = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6]),
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10]),
    ]
    return builders.model(helper.make_graph(nodes, "lin", io[:1], io[1:], inits))


def _unoptimized(model: onnx.ModelProto | str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    src = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def test_w8a8_simulation_equals_the_exported_file_as_written(tmp_path: Path) -> None:
    model = from_proto(linear_conv_net())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    out = tmp_path / "w8a8.onnx"
    result = drain(export(engine, plan, out))
    stored = {n for n, r in result.layers.items() if r.bias is not None}
    assert stored == {"conv", "linear", "head"}  # every kernel layer's bias became int32
    feeds = _assert_sim_equals_file(engine, plan, out)
    # the fed biases are the file's int32 codes times s_x * s_w (DequantizeLinear, float32)
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    for name, rec in result.layers.items():
        bias = rec.bias
        assert bias is not None, name
        codes, scale = inits[f"{bias.bias}_i32_codes"], inits[f"{bias.bias}_i32_scale"]
        np.testing.assert_array_equal(feeds[bias.bias], codes.astype(np.float32) * scale)


def _assert_sim_equals_file(engine: Engine, plan: Plan, out: Path) -> dict[str, np.ndarray]:
    """The simulation of ``plan`` run as written gives the exported file's ``y`` on every
    evaluation feed, and run_outputs (the window's numbers) reads the same feeds; returns
    them."""
    sim, feeds = engine.simulation(plan)
    s_sim, s_file = _unoptimized(sim.model), _unoptimized(str(out))
    wanted = {i.name for i in s_sim.get_inputs()}
    for i in engine.data.evaluation:
        sample = engine.data.samples[i]
        (a,) = s_sim.run(["y"], {k: v for k, v in {**sample, **feeds}.items() if k in wanted})
        (b,) = s_file.run(["y"], sample)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        engine.run_outputs(plan)["y"][0],
        _optimized_sim(sim.model, {**engine.data.samples[engine.data.evaluation[0]], **feeds}),
    )
    return feeds


def _optimized_sim(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    from bitlens.core.engine.session import make_session

    sess = make_session(model, "cpu")
    wanted = {i.name for i in sess.get_inputs()}
    return sess.run(["y"], {k: v for k, v in feed.items() if k in wanted})[0]


def shared_bias_gemms(*, add_bias: bool = False) -> onnx.ModelProto:
    """x[2,8] -> Gemm(w1, b) and Mul(x, 5) -> Gemm(w2, b), added -> y[2,8]: one bias
    initializer read by two Gemms whose inputs have different ranges, so different activation
    scales (an unrolled LSTMCell's Gemms all read one bias, as in captcha-whisperer's CRNN).
    ``add_bias``: y also gets b added by an Add (a reader that is no layer)."""
    rng = np.random.default_rng(5)
    inits = [
        builders.init("w1", rng.normal(0, 0.3, (8, 8)).astype(np.float32)),
        builders.init("w2", rng.normal(0, 0.3, (8, 8)).astype(np.float32)),
        builders.init("b", rng.normal(0, 0.4, 8).astype(np.float32)),
        builders.init("five", np.array(5.0, np.float32)),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b"], ["g1"], name="first", transB=1),
        helper.make_node("Mul", ["x", "five"], ["x5"], name="scale_up"),
        helper.make_node("Gemm", ["x5", "w2", "b"], ["g2"], name="second", transB=1),
        helper.make_node("Add", ["g1", "g2"], ["y0" if add_bias else "y"], name="sum"),
    ]
    if add_bias:
        nodes.append(helper.make_node("Add", ["y0", "b"], ["y"], name="plus_b"))
    io = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8]),
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8]),
    ]
    return builders.model(helper.make_graph(nodes, "shared_bias", io[:1], io[1:], inits))


@pytest.mark.parametrize("add_bias", [False, True])
def test_a_bias_shared_by_two_gemms_is_rounded_per_reader(tmp_path: Path, add_bias: bool) -> None:
    """The export stores an int32 copy of a shared bias per reader, each at that reader's
    s_x * s_w; the engine fed one float tensor to both, so the simulation differed."""
    model = from_proto(shared_bias_gemms(add_bias=add_bias))
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    out = tmp_path / "shared.onnx"
    result = drain(export(engine, plan, out))
    assert {n for n, r in result.layers.items() if r.bias is not None} == {"first", "second"}
    feeds = _assert_sim_equals_file(engine, plan, out)
    # each Gemm is fed its own copy, on its own grid
    (b1, first), (b2, second) = (shared_biases(engine.info)[n] for n in ("first", "second"))
    assert b1 == b2 == "b"
    assert not np.array_equal(feeds[first], feeds[second])
    # the float bias stays an input only while a node still reads it (the Add)
    sim, _ = engine.simulation(plan)
    assert ("b" in {i.name for i in sim.model.graph.input}) is add_bias
