"""Deployment targets: which tensors get quantizers, simulated exactly and fused by ORT."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.cli import main
from bitlens.core.engine import Engine
from bitlens.core.errors import PlanError
from bitlens.core.export.deployed import optimized_model
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.plan_checks import check_plan, deployment_warnings
from tests.core.export_models import random_feeds
from tests.core.test_engine import plain_run, rewritten
from tests.core.test_export_models import run


def silu_net() -> onnx.ModelProto:
    """A YOLO-style block (SiLU = x * Sigmoid(x)) with a residual Add and a neck::

        x[1,3,16,16] -> conv0 -> SiLU -> conv1 -> SiLU -> conv2 -> SiLU -(+ conv1's SiLU)-> r
        r -> MaxPool -> Resize(nearest) -> Concat(., r) -> Add(bias const) -> conv3 -> y
        r -> GlobalAveragePool -> Flatten -> fc(Gemm) -> z

    The bias Add has a constant input (stays float); y and z are graph outputs (never
    quantized).
    """
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    mk = helper.make_node

    def conv(x: str, cin: int, cout: int, tag: str, silu: bool = True) -> str:
        w = rng.normal(0, np.sqrt(2 / (cin * 9)), (cout, cin, 3, 3)).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{tag}.w"),
                      numpy_helper.from_array(rng.normal(0, .1, cout).astype(np.float32), f"{tag}.b")])  # fmt: skip
        nodes.append(mk("Conv", [x, f"{tag}.w", f"{tag}.b"], [f"{tag}.c"], name=tag, pads=[1] * 4))
        if not silu:
            return f"{tag}.c"
        nodes.extend([mk("Sigmoid", [f"{tag}.c"], [f"{tag}.s"], name=f"{tag}_sig"),
                      mk("Mul", [f"{tag}.c", f"{tag}.s"], [f"{tag}.y"], name=f"{tag}_mul")])  # fmt: skip
        return f"{tag}.y"

    a = conv("x", 3, 8, "conv0")
    b = conv(a, 8, 8, "conv1")
    c = conv(b, 8, 8, "conv2")
    inits += [
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(rng.normal(0, 0.1, (1, 16, 1, 1)).astype(np.float32), "bias"),
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 8)).astype(np.float32), "fc.w"),
    ]
    nodes += [
        mk("Add", [c, b], ["r"], name="res"),
        mk("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        mk("Resize", ["p", "", "scales"], ["u"], name="up", mode="nearest"),
        mk("Concat", ["u", "r"], ["cat"], name="cat", axis=1),
        mk("Add", ["cat", "bias"], ["cb"], name="bias_add"),
    ]  # fmt: skip
    conv("cb", 16, 4, "conv3", silu=False)
    nodes += [
        mk("Identity", ["conv3.c"], ["y"]),
        mk("GlobalAveragePool", ["r"], ["g"], name="gap"),
        mk("Flatten", ["g"], ["f"], name="flat"),
        mk("Gemm", ["f", "fc.w"], ["z"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes, "silu_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


@pytest.fixture(scope="module")
def engine() -> Engine:
    model = from_proto(silu_net())
    return Engine(model, random_feeds(model.info, 4), device="cpu")


def test_ort_cpu_places_quantizers_like_ort_does(engine: Engine) -> None:
    placed = engine.placement(Plan.preset(engine.info, "W8A8"))
    want = {
        "conv0.c", "conv1.c", "conv2.c", "conv3.c",  # conv outputs (conv3's via the Identity)
        "conv0.s", "conv0.y", "conv1.s", "conv1.y", "conv2.s", "conv2.y",  # Sigmoid, Mul
        "r", "p", "u", "cat", "g", "f",  # residual Add, pool, nearest Resize, Concat, GAP
    }  # fmt: skip
    assert want - {"conv3.c"} <= set(placed)
    # never a graph output, nor the input of an op with a constant (the bias Add: float)
    assert not {"y", "z", "cb"} & set(placed)
    # MaxPool and nearest Resize keep their input's grid: same range, so ORT drops the pair
    assert placed["p"].range_of == placed["u"].range_of == "r"
    assert placed["cat"].range_of == "cat"
    # conv3's output goes through Identity to a graph output: ORT cannot fuse, but the
    # Identity's input is still quantizable
    assert all(q.format.name == "uint8 asym" for q in placed.values())
    assert engine.placement(Plan.preset(engine.info, "W8A8").with_target("none")) == {}
    # int4 weights (per channel) next to uint8 activations are integer kernels too (stored
    # as INT4, Cast to int8 for ONNX Runtime: test_export_int4_kernel.py): the same tensors
    assert engine.placement(Plan.preset(engine.info, "W4A8")) == placed
    assert engine.placement(Plan.preset(engine.info, "W4A16")) == {}  # blocks, fp16: none


def test_engine_simulates_the_targets_quantizers_exactly(engine: Engine) -> None:
    plan = Plan.preset(engine.info, "W8A8")
    got = engine.run_outputs(plan)
    feeds = [engine.data.samples[i] for i in engine.data.evaluation]
    # independent reference: real QuantizeLinear/DequantizeLinear at the same tensors
    want = plain_run(rewritten(engine, plan), feeds)
    for g, r in zip(got["y"], want, strict=True):
        np.testing.assert_array_equal(g, r)
    # and the target's quantizers change the result (they are really simulated)
    none = engine.run_outputs(plan.with_target("none"))
    assert not np.array_equal(none["y"][0], got["y"][0])


def test_w8a8_export_runs_every_int8_conv_as_an_integer_kernel(
    engine: Engine, tmp_path: Path
) -> None:
    plan = Plan.preset(engine.info, "W8A8")
    result, report = run(engine, plan, tmp_path / "silu.onnx")
    kernels = {la.name: la.kernel for la in report.layers}
    assert kernels == {
        "conv0": "QLinearConv", "conv1": "QLinearConv", "conv2": "QLinearConv",
        "conv3": "QLinearConv", "fc": "QGemm",
    }  # fmt: skip
    assert all(o.as_written_exact for o in report.outputs)  # the file computes the simulation
    assert report.passed, report.failures
    opt = optimized_model(str(result.path), ["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in opt.graph.node)
    assert ops["QLinearSigmoid"] == 3 and ops["QLinearMul"] == 3
    assert ops["QLinearAdd"] == 1 and ops["QLinearConcat"] == 1
    assert ops["QLinearGlobalAveragePool"] == 1
    # the layers' own quantizers on tensors the target quantizes are not written twice
    q_nodes = [n for n in onnx.load(str(result.path)).graph.node if n.op_type == "QuantizeLinear"]
    assert len({n.input[0] for n in q_nodes}) == len(q_nodes)
    # target "none": the convs run in float, as before
    _, rep_none = run(engine, plan.with_target("none"), tmp_path / "silu_none.onnx")
    assert sum("QLinearConv" in la.kernel for la in rep_none.layers) < 4
    assert any("stayed float although its plan asked for int8" in n for n in rep_none.notes)


def test_plan_json_carries_the_target(engine: Engine) -> None:
    plan = Plan.preset(engine.info, "W8A8").with_target("tensorrt")
    again = Plan.from_json(engine.info, plan.to_json())
    assert again == plan and again.target == "tensorrt"
    assert plan != plan.with_target("none")
    data = json.loads(plan.to_json())
    del data["target"]
    assert Plan.from_dict(engine.info, data).target == "ort-cpu"  # files from before targets
    data["target"] = "tpu"
    with pytest.raises(PlanError, match="unknown deployment target 'tpu'"):
        Plan.from_dict(engine.info, data)
    data["target"] = 3
    with pytest.raises(PlanError, match="target"):
        Plan.from_dict(engine.info, data)


def test_warnings_before_export(engine: Engine) -> None:
    plan = Plan(
        engine.info,
        {
            "conv0": LayerChoice.of("int8 sym ch", "uint8 asym", dynamic=True),
            "conv1": LayerChoice.of("int8 sym ch", "fp16"),
            "conv2": LayerChoice.of("int8 sym ch", "uint8 asym"),
        },
    )
    text = "\n".join(deployment_warnings(plan))
    assert "'conv0'" in text and "ConvInteger" in text
    assert "'conv1': int8 weights will run in float: activation fp16" in text
    assert "'conv2'" not in text
    assert "'conv2'" in "\n".join(deployment_warnings(plan.with_target("none")))


def test_layers_in_float_for_one_reason_are_one_warning(engine: Engine) -> None:
    """mk8dx-table-reader's 16 Loop-body MatMuls gave 16 warnings of one reason (and the
    report 16 notes): layers run in float for the same reason are said in one line."""
    choice = LayerChoice.of("int8 sym ch", "fp16")
    plan = Plan(engine.info, {n: choice for n in ("conv0", "conv1", "conv2", "conv3")})
    assert deployment_warnings(plan) == [
        "4 layers ('conv0', 'conv1' and 2 more): int8 weights will run in float: "
        "activation fp16 (integer kernels need per-tensor 8-bit integers)"
    ]
    two = Plan(engine.info, {n: choice for n in ("conv0", "conv2")})
    assert deployment_warnings(two) == [
        "layers 'conv0' and 'conv2': int8 weights will run in float: activation fp16 "
        "(integer kernels need per-tensor 8-bit integers)"
    ]


def test_tensorrt_rules(engine: Engine) -> None:
    w8a8 = Plan.preset(engine.info, "W8A8").with_target("tensorrt")
    problems = check_plan(w8a8)
    assert any("symmetric int8 activations, not uint8 asym" in p for p in problems)
    sym = Plan.uniform(engine.info, "int8 sym narrow ch", "int8 sym").with_target("tensorrt")
    assert check_plan(sym) == []
    # TensorRT's int8 weights are -127..127: a -128 code is out of its range
    wide = Plan.uniform(engine.info, "int8 sym ch", "int8 sym").with_target("tensorrt")
    assert any("-127..127 (int8 sym narrow)" in p for p in check_plan(wide))
    assert engine.placement(sym) == {}  # TensorRT places output requantization itself
    blocked = Plan.uniform(engine.info, "int8 sym blk4", "int8 sym").with_target("tensorrt")
    assert any("per-tensor or per-channel" in p for p in check_plan(blocked))
    assert check_plan(w8a8.with_target("ort-cpu")) == []


def test_cli_target_option(tmp_path: Path) -> None:
    src = tmp_path / "silu.onnx"
    onnx.save(silu_net(), str(src))
    out = tmp_path / "plan.json"
    assert main(["plan", str(src), "--preset", "W8A8", "--target", "none", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["target"] == "none"
    with pytest.raises(SystemExit):
        main(["plan", str(src), "--preset", "W8A8", "--target", "gpu", "-o", str(out)])


def test_tensorrt_export_runs_in_ort(engine: Engine, tmp_path: Path) -> None:
    plan = Plan.uniform(engine.info, "int8 sym narrow ch", "int8 sym").with_target("tensorrt")
    result, report = run(engine, plan, tmp_path / "trt.onnx")
    assert report.passed, report.failures
    model = onnx.load(str(result.path))
    # TensorRT's Q/DQ rules: int8 activations with zero point 0, per-tensor; weights
    # per output channel on axis 0 with zero point 0
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and zp.ndim == 0 and zp == 0
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:  # a weight
            assert inits[n.input[0]].dtype == np.int8
            assert not np.any(inits[n.input[2]])
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert sess.run(None, engine.data.samples[0])[0].shape == (1, 4, 16, 16)


def test_as_deployed_numbers_are_the_exported_models(engine: Engine, tmp_path: Path) -> None:
    from bitlens.core.export.asdeployed import DeployedRunner

    plan = Plan.preset(engine.info, "W8A8")
    runner = DeployedRunner(engine)
    try:
        got = runner.outputs(plan)
        assert runner.session(plan) is runner.session(plan)  # cached per plan
        rows = {r.name: r for r in runner.compare(plan)}
    finally:
        runner.close()
    result, _ = run(engine, plan, tmp_path / "fresh.onnx")
    fresh = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for k, i in enumerate(engine.data.evaluation):
        y, z = fresh.run(["y", "z"], engine.data.samples[i])
        np.testing.assert_array_equal(got["y"][k], y)  # bit-exact with a fresh default session
        np.testing.assert_array_equal(got["z"][k], z)
    assert set(rows) == {"y", "z"}
    sim = engine.run_outputs(plan)["y"]
    exact = all(np.array_equal(a, b) for a, b in zip(sim, got["y"], strict=True))
    assert rows["y"].exact == exact
    assert rows["y"].deployed.sqnr_db > 20 and rows["y"].simulated.sqnr_db > 20


def test_cli_eval_deployed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "silu.onnx"
    onnx.save(silu_net(), str(src))
    rc = main(["eval", str(src), "--preset", "W8A8", "--samples", "4", "--device", "cpu",
               "--deployed", "--json"])  # fmt: skip
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["deployed"]] == ["y", "z"]
    for r in data["deployed"]:  # the integer kernels round a little differently
        assert abs(r["deployed_sqnr_db"] - r["simulated_sqnr_db"]) < 1.0


def test_small_1x1_conv_kernels_store_what_the_plan_accounts(tmp_path: Path) -> None:
    """x[1,16,8,8] -> conv1 (1x1, 16->16) -> Relu -> conv2 (1x1) -> y: with K = 16 a
    per-channel int8 zero point (all zeros) was 5% more than the plan accounts and failed the
    check (seen on open_nsfw's 1x1 convs); QLinearConv fuses without it."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.normal(0, .3, (16, 16, 1, 1)).astype(np.float32), n)
             for n in ("w1", "w2")]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2"),
    ]
    g = helper.make_graph(
        nodes, "pointwise", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])], inits,
    )  # fmt: skip
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = from_proto(proto)
    eng = Engine(model, random_feeds(model.info, 4), device="cpu")
    _, report = run(eng, Plan.preset(model.info, "W8A8"), tmp_path / "pw.onnx")
    assert report.passed, report.failures
    conv1 = next(la for la in report.layers if la.name == "conv1")
    assert conv1.kernel == "QLinearConv" and conv1.bytes_stored <= conv1.bytes_planned + 8


def test_cli_export_warns_before_exporting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "silu.onnx"
    onnx.save(silu_net(), str(src))
    info = from_proto(silu_net()).info
    plan = Plan.preset(info, "W8A8").with_choices(
        {"conv1": LayerChoice.of("int8 sym ch", "uint8 asym", dynamic=True)}
    )
    (tmp_path / "plan.json").write_text(plan.to_json())
    rc = main(["export", str(src), "--plan", str(tmp_path / "plan.json"), "-o",
               str(tmp_path / "out.onnx"), "--samples", "4", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0
    assert "warning: layer 'conv1'" in err and "ConvInteger" in err


def test_cached_errors_follow_the_targets_quantizers() -> None:
    """Changing one layer to blocked int3 (no integer kernel) drops its output quantizer (and
    the Sigmoid/Mul ones after it): the accumulated errors reused from the previous plan must
    still be right."""
    model = from_proto(silu_net())
    data = random_feeds(model.info, 4)
    first = Plan.preset(model.info, "W8A8")
    second = first.with_choices({"conv1": LayerChoice.of("int3 sym blk16", "uint8 asym")})
    assert set(Engine(model, data, device="cpu").placement(first)) != set(
        Engine(model, data, device="cpu").placement(second)
    )
    warm = Engine(model, data, device="cpu")
    warm.evaluate(first)
    got = warm.evaluate(second)
    want = Engine(model, data, device="cpu").evaluate(second)
    for name, r in want.layers.items():
        if r.accumulated is not None:
            assert got.layers[name].accumulated == r.accumulated, name
    assert got.outputs["y"].error == want.outputs["y"].error
