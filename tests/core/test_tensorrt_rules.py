"""TensorRT's documented Q/DQ rules (bitlens.core.export.tensorrt), each on a small graph.

Every case is a valid ONNX model that ONNX Runtime runs on the CPU; only TensorRT would
refuse it or run it differently, so the checks are read from the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.export.tensorrt import structural_problems
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests import builders
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run
from tests.core.test_targets import silu_net

ZERO = np.int8(0)
STEP = np.float32(0.02)


def qdq_conv(
    *,
    act_zp: np.ndarray | None = ZERO,
    act_scale: np.ndarray = STEP,
    w_min: int = -127,
    w_axis: int = 0,
    per_channel_w: bool = True,
    quantize_input: bool = True,
    computed_scale: bool = False,
    residual: bool = False,
    dq_of_computed: bool = False,
) -> onnx.ModelProto:
    """x[1,4,8,8] -Q/DQ-> Conv(4->4, 3x3, DQ(int8 weight)) -> y (+ x when ``residual``)::

    x -> QuantizeLinear -> DequantizeLinear -> Conv -> [Add(., x)] -> y
                         w_codes -> DequantizeLinear -^
    """
    rng = np.random.default_rng(0)
    codes = rng.integers(-127, 128, (4, 4, 3, 3)).astype(np.int8)
    codes.flat[0] = w_min
    ws = np.full(4 if per_channel_w else 1, 0.01, np.float32)
    if not per_channel_w:
        ws = ws.reshape(())
    inits = [
        numpy_helper.from_array(codes, "w_codes"),
        numpy_helper.from_array(ws, "w_scale"),
        numpy_helper.from_array(np.zeros(ws.shape, np.int8), "w_zp"),
    ]
    nodes = []
    if computed_scale:  # a scale computed at run time (not a build-time constant)
        inits.append(numpy_helper.from_array(np.float32(0.04), "s2"))
        nodes.append(helper.make_node("Div", ["s2", "two"], ["a_scale"]))
        inits.append(numpy_helper.from_array(np.float32(2.0), "two"))
    else:
        inits.append(numpy_helper.from_array(np.asarray(act_scale, np.float32), "a_scale"))
    zp_in = ["a_zp"] if act_zp is not None else []
    if act_zp is not None:
        inits.append(numpy_helper.from_array(np.asarray(act_zp), "a_zp"))
    x_in = "x"
    if quantize_input:
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "a_scale", *zp_in], ["xq"], name="qx"),
            helper.make_node("DequantizeLinear", ["xq", "a_scale", *zp_in], ["xd"], name="dqx"),
        ]
        x_in = "xd"
    if dq_of_computed:  # dequantizing int8 values computed by a Cast, not by a Q
        nodes += [
            helper.make_node("Cast", ["x"], ["xi"], to=TensorProto.INT8),
            helper.make_node("DequantizeLinear", ["xi", "a_scale", *zp_in], ["xc"], name="dqc"),
            helper.make_node("Add", [x_in, "xc"], ["xs"]),
        ]
        x_in = "xs"
    nodes += [
        helper.make_node("DequantizeLinear", ["w_codes", "w_scale", "w_zp"], ["w"],
                         name="dqw", axis=w_axis),
        helper.make_node("Conv", [x_in, "w"], ["c"], name="conv", pads=[1] * 4),
    ]  # fmt: skip
    out = "c"
    if residual:
        nodes.append(helper.make_node("Add", ["c", "x"], ["r"], name="res"))
        out = "r"
    nodes.append(helper.make_node("Identity", [out], ["y"]))
    g = helper.make_graph(
        nodes, "trt_rules",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _runs_in_ort(m: onnx.ModelProto) -> None:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(1, 4, 8, 8)).astype(np.float32)
    assert sess.run(None, {"x": x})[0].shape == (1, 4, 8, 8)


def test_a_model_following_the_rules_passes() -> None:
    m = qdq_conv()
    _runs_in_ort(m)
    assert structural_problems(m) == ([], [])
    assert structural_problems(qdq_conv(per_channel_w=False)) == ([], [])


@pytest.mark.parametrize(
    ("knobs", "words"),
    [
        ({"act_zp": np.uint8(128)}, "TensorRT needs int8"),  # uint8 asymmetric activations
        ({"act_zp": np.int8(3)}, "zero point must be 0"),
        ({"act_zp": None}, "no zero point means uint8"),
        ({"act_scale": np.float32(-0.02)}, "positive and finite"),
        ({"computed_scale": True}, "not a constant initializer"),
        ({"w_min": -128}, "-127..127 in TensorRT, found -128"),
        ({"w_axis": 1}, "TensorRT needs the output channels of Conv 'conv' (axis 0"),
        ({"quantize_input": False}, "quantizes all inputs of weighted operations"),
        ({"dq_of_computed": True}, "dequantizes a computed tensor"),
    ],
)
def test_each_rule_names_what_breaks_it(knobs: dict, words: str) -> None:
    m = qdq_conv(**knobs)
    if "computed_scale" not in knobs and "w_axis" not in knobs:
        _runs_in_ort(m)  # a valid ONNX model: only TensorRT's rules reject it
    problems, _ = structural_problems(m)
    assert any(words in p for p in problems), problems


def test_per_channel_activations_are_refused() -> None:
    m = qdq_conv(act_scale=np.full(4, 0.02, np.float32), act_zp=np.zeros(4, np.int8))
    for n in m.graph.node:
        if n.name in ("qx", "dqx"):
            n.attribute.append(helper.make_attribute("axis", 1))
    problems, _ = structural_problems(m)
    assert any("per tensor in TensorRT, not per channel" in p for p in problems)


def test_an_unquantized_residual_input_is_a_recommendation() -> None:
    problems, advice = structural_problems(qdq_conv(residual=True))
    assert problems == []
    assert advice and "residual input" in advice[0] and "Conv 'conv'" in advice[0]


def test_gemm_weights_per_output_channel_follow_transb() -> None:
    """x[2,8] -Q/DQ-> Gemm(DQ(w)) with w [4,8] (transB=1, axis 0) or [8,4] (transB=0, axis 1)."""

    def gemm(trans_b: int, axis: int) -> onnx.ModelProto:
        shape = (4, 8) if trans_b else (8, 4)
        inits = [
            numpy_helper.from_array(np.ones(shape, np.int8), "wc"),
            numpy_helper.from_array(np.full(4, 0.1, np.float32), "ws"),
            numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
            numpy_helper.from_array(np.float32(0.1), "s"),
            numpy_helper.from_array(np.int8(0), "z"),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
            helper.make_node("DequantizeLinear", ["wc", "ws", "wz"], ["w"], axis=axis),
            helper.make_node("Gemm", ["d", "w"], ["y"], name="fc", transB=trans_b),
        ]
        g = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits,
        )  # fmt: skip
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])

    assert structural_problems(gemm(1, 0))[0] == []
    assert structural_problems(gemm(0, 1))[0] == []
    assert any("axis 1" in p for p in structural_problems(gemm(1, 1))[0]) or any(
        "output channels of Gemm 'fc'" in p for p in structural_problems(gemm(1, 1))[0]
    )


def test_tensorrt_target_export_follows_the_rules(tmp_path: Path) -> None:
    """The exporter's TensorRT file passes every rule (the fidelity check runs them too)."""
    model = from_proto(silu_net())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.uniform(engine.info, "int8 sym narrow ch", "int8 sym").with_target("tensorrt")
    result, report = run(engine, plan, tmp_path / "trt.onnx")
    assert report.passed, report.failures
    problems, _ = structural_problems(onnx.load(str(result.path)))
    assert problems == []


@pytest.mark.parametrize("build", [builders.conv_net, builders.mlp], ids=["conv", "mlp"])
def test_tensorrt_preset_writes_int8_zero_points(build, tmp_path: Path) -> None:
    """The W8A8 preset for the TensorRT target exports a conv net (Conv weights had no zero
    point) and an MLP (its biases were int32 DequantizeLinear) passing TensorRT's rules."""
    model = from_proto(build())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8", target="tensorrt")
    assert plan.target == "tensorrt"
    result, report = run(engine, plan, tmp_path / "trt.onnx")
    assert report.passed, report.failures
    exported = onnx.load(str(result.path))
    assert structural_problems(exported)[0] == []
    inits = {t.name: numpy_helper.to_array(t) for t in exported.graph.initializer}
    dqs = [n for n in exported.graph.node if n.op_type == "DequantizeLinear"]
    assert dqs and all(len(n.input) == 3 and inits[n.input[2]].dtype == np.int8 for n in dqs)
    assert all(np.all(inits[n.input[2]] == 0) for n in dqs)
