"""An LSTM with int8 weights exported as ONNX Runtime's DynamicQuantizeLSTM (ort-cpu target).

ONNX Runtime's own static quantizer leaves an LSTM float; its float kernel was most of the
int8 time of a CRNN recognizer. A plan that marks the LSTM ``dynamic`` (uint8 activations,
symmetric int8 weights) is written as the contrib kernel, which quantizes its input and
hidden state at run time (bitlens.core.export.dynamic_lstm).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core import lstm_kernel, metrics, targets
from bitlens.core.engine import Engine
from bitlens.core.engine.weights_only import weight_evaluation
from bitlens.core.export.asdeployed import DeployedRunner
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests import builders
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def _asked(plan: Plan) -> Plan:
    """``plan`` with the LSTM marked dynamic: the kernel asked for, as a plan file may; the
    presets leave this small LSTM (hidden 16) float, where the kernel runs slower."""
    return plan.with_choices({"lstm": dataclasses.replace(plan["lstm"], dynamic=True)})


@pytest.fixture(scope="module")
def engine() -> Engine:
    model = from_proto(builders.lstm_recognizer())
    eng = Engine(model, random_feeds(model.info, 4), device="cpu")
    drain(eng.calibrate("minmax"))
    return eng


def _reference_kernel(w: np.ndarray, r: np.ndarray, b: np.ndarray, per_channel: bool):
    """ONNX Runtime's DynamicQuantizeLSTM built by hand from the float weights, quantized in
    numpy with Bitlens's int8 sym rule (codes -128..127, scale = 2 max|w| / 255 per gate row
    over both directions, or per tensor), as onnxruntime's quantization/operators/lstm.py
    lays it out."""
    d, rows, hidden = w.shape[0], w.shape[1], r.shape[2]
    inits = [numpy_helper.from_array(b, "B")]
    names = []
    for name, x in (("W", w), ("R", r)):
        amax = np.abs(x).max(axis=(0, 2)) if per_channel else np.abs(x).max()
        s = (np.float32(2) * np.float32(amax) / np.float32(255)).astype(np.float32)
        sb = s.reshape(1, rows, 1) if per_channel else s
        codes = np.clip(np.rint(x / sb), -128, 127).astype(np.int8)
        scale = np.broadcast_to(s, (d, rows)).copy() if per_channel else np.full(d, s, np.float32)
        inits += [
            numpy_helper.from_array(np.ascontiguousarray(codes.transpose(0, 2, 1)), name),
            numpy_helper.from_array(scale, f"{name}_s"),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}_z"),
        ]
        names += [f"{name}_s", f"{name}_z"]
    node = helper.make_node(
        "DynamicQuantizeLSTM", ["x", "W", "R", "B", "", "", "", "", *names], ["y"],
        domain="com.microsoft", direction="bidirectional", hidden_size=hidden,
    )  # fmt: skip
    g = helper.make_graph(
        [node], "ref", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                            helper.make_opsetid("com.microsoft", 1)])  # fmt: skip
    m.ir_version = 8
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def _with_output(path: Path, name: str) -> ort.InferenceSession:
    m = onnx.load(str(path))
    m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    # as written: a default session moves the head's quantizer up through Transpose/Reshape
    # onto the LSTM's output (QDQ propagation), and would return that tensor quantized
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("weight", ["int8 sym ch", "int8 sym"])
def test_lstm_runs_as_dynamic_quantize_lstm(engine: Engine, weight: str, tmp_path: Path) -> None:
    plan = _asked(Plan.uniform(engine.info, weight, "uint8 asym"))
    assert plan["lstm"].dynamic and not plan["head"].dynamic
    result, report = run(engine, plan, tmp_path / "k.onnx")
    assert report.passed, report.failures
    ops = [n.op_type for n in onnx.load(str(result.path)).graph.node]
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    layers = {la.name: la for la in report.layers}
    assert layers["lstm"].kernel == "DynamicQuantizeLSTM"
    assert all(w.exact for w in layers["lstm"].weights)  # the codes rebuild the engine's weights
    # the engine ran the kernel itself: no difference left to explain, the file is the prediction
    assert not any("not simulated" in n for n in report.notes), report.notes
    assert all(o.deployed_max_rel <= 1e-6 for o in report.outputs), report.outputs
    # the file's LSTM output equals an independently built kernel on the same inputs, bit for bit
    src = {t.name: numpy_helper.to_array(t) for t in builders.lstm_recognizer().graph.initializer}
    ref = _reference_kernel(src["W"], src["R"], src["B"], per_channel=weight.endswith("ch"))
    ours = _with_output(result.path, "y")
    for i in engine.data.evaluation:
        x = engine.data.samples[i]["x"]
        np.testing.assert_array_equal(ours.run(["y"], {"x": x})[0], ref.run(["y"], {"x": x})[0])


def test_kernel_size_is_accounted(engine: Engine, tmp_path: Path) -> None:
    plan = _asked(Plan.preset(engine.info, "W8A8"))
    result, report = run(engine, plan, tmp_path / "k.onnx")
    rec = result.layers["lstm"]
    # int8 codes of W [2, 64, 16] and R [2, 64, 16], plus a float32 scale and an int8 zero
    # point per direction and gate row
    assert rec.bytes_stored == 2 * (2 * 64 * 16 + 2 * 64 * 5)
    assert report.file_bytes == report.file_expected
    assert all(not w.problems for la in report.layers for w in la.weights)


@pytest.mark.parametrize("weight", ["int8 sym ch", "int8 sym"])
def test_predicted_bytes_are_the_files(engine: Engine, tmp_path: Path, weight: str) -> None:
    """What the window and ``eval`` show for the kernel LSTM (its bytes after, the model's
    total) is what the file stores: the kernel's layout keeps a scale and a zero point per
    direction (and gate row), which the format's own accounting has once and without."""
    plan = _asked(Plan.uniform(engine.info, weight, "uint8 asym"))
    result, _ = run(engine, plan, tmp_path / "k.onnx")
    rec = result.layers["lstm"]
    stored = onnx.load(str(result.path)).graph.initializer
    in_file = sum(numpy_helper.to_array(t).nbytes for t in stored
                  if t.name in {s.name for e in rec.weights for s in e.stored})  # fmt: skip
    ev = engine.evaluate(plan)
    assert ev.layers["lstm"].bytes_after == rec.bytes_stored == rec.bytes_planned == in_file
    head = ev.layers["head"].bytes_after
    assert ev.bytes_after == in_file + head
    only = weight_evaluation(engine, plan)  # without data: the same figures
    assert only.layers["lstm"].bytes_after == in_file and only.bytes_after == ev.bytes_after


def test_other_choices_keep_the_float_lstm(engine: Engine, tmp_path: Path) -> None:
    """int4 weights, static activations, another target: ONNX's LSTM as before."""
    static = Plan.uniform(engine.info, "int8 sym ch", "uint8 asym")
    c = static["lstm"]
    int4 = Plan.uniform(engine.info, "int4 sym ch", "uint8 asym")
    plans = [
        static,  # not dynamic
        int4.with_choices({"lstm": LayerChoice(int4["lstm"].weight, c.activation, True)}),
        _asked(static).with_target(targets.NONE),
    ]
    for k, plan in enumerate(plans):
        result, report = run(engine, plan, tmp_path / f"f{k}.onnx")
        assert report.passed, (k, report.failures)
        ops = [n.op_type for n in onnx.load(str(result.path)).graph.node]
        assert "LSTM" in ops and "DynamicQuantizeLSTM" not in ops, k


def test_the_ort_cpu_presets_choose_the_kernel_where_it_runs_faster() -> None:
    """At hidden 128 x 64 inputs (98,304 weights per step and direction) DynamicQuantizeLSTM
    ran 0.87-0.89x the float LSTM's time: the presets choose it there."""
    info = from_proto(builders.lstm_recognizer(steps=2, inp=64, hidden=128)).info
    assert lstm_kernel.step_weights(info.layer("lstm")) == lstm_kernel.KERNEL_MIN_STEP_WEIGHTS
    plan = Plan.preset(info, "W8A8")
    assert plan["lstm"].dynamic and not plan["head"].dynamic
    assert Plan.from_json(info, plan.to_json()) == plan  # "dynamic": true in the JSON
    assert not Plan.preset(info, "W8A8", target=targets.NONE)["lstm"].dynamic
    assert not Plan.preset(info, "W4A8")["lstm"].dynamic  # int4 weights: no kernel
    assert not lstm_kernel.float_note(plan)
    # a plan turns it off per layer
    off = plan.with_choices({"lstm": LayerChoice(plan["lstm"].weight, plan["lstm"].activation)})
    assert not off["lstm"].dynamic


@pytest.mark.parametrize(("inp", "hidden"), [(64, 112), (16, 128), (256, 64)])
def test_the_presets_keep_a_small_lstm_float(inp: int, hidden: int) -> None:
    """Below the crossover (64 hidden x 64 inputs: 1.37x; 112 x 64: 0.97-1.02x; 128 x 16:
    0.92-0.97x; 64 x 256: 0.97x the float LSTM's time) W8A8 keeps ONNX's float LSTM on a
    calibrated input quantizer; before, it chose the kernel whatever the size."""
    info = from_proto(builders.lstm_recognizer(steps=2, inp=inp, hidden=hidden)).info
    plan = Plan.preset(info, "W8A8")
    assert not plan["lstm"].dynamic and plan["lstm"].activation is not None
    assert plan["lstm"].weight == Plan.preset(info, "W8A8", target=targets.NONE)["lstm"].weight
    assert not lstm_kernel.kernel_layers(plan)


def test_a_small_lstms_export_says_why_it_stays_float(engine: Engine, tmp_path: Path) -> None:
    """W8A8 on the hidden-16 LSTM: ONNX's LSTM in the file, and the report says why."""
    plan = Plan.preset(engine.info, "W8A8")
    result, report = run(engine, plan, tmp_path / "w8a8.onnx")
    assert report.passed, report.failures
    ops = [n.op_type for n in onnx.load(str(result.path)).graph.node]
    assert "LSTM" in ops and "DynamicQuantizeLSTM" not in ops
    why = [n for n in result.notes if "kept as ONNX's float LSTM" in n]
    assert len(why) == 1 and "'lstm'" in why[0] and "2,048" in why[0], result.notes


def test_as_deployed_is_the_file(engine: Engine, tmp_path: Path) -> None:
    plan = _asked(Plan.preset(engine.info, "W8A8"))
    runner = DeployedRunner(engine)
    try:
        rep = drain(runner.run(plan))
    finally:
        runner.close()
    result, _ = run(engine, plan, tmp_path / "fresh.onnx")
    fresh = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    dep = np.concatenate(
        [fresh.run(["logits"], engine.data.samples[i])[0].ravel() for i in engine.data.evaluation]
    )
    sim = np.concatenate([s.ravel() for s in engine.run_outputs(plan)["logits"]])
    out = {o.name: o for o in rep.outputs}["logits"]
    assert out.max_abs_difference == pytest.approx(float(np.abs(dep - sim).max()), abs=1e-12)
    # the engine runs the kernel, its hidden state's per-step rounding included: the file's
    # numbers within float reassociation in the head (it was 4e-3 of the range, 6.7e-3)
    assert out.max_abs_difference <= 1e-6 * float(np.abs(sim).max())


@pytest.mark.parametrize("weight", ["int8 sym ch", "int8 sym"])
def test_the_window_predicts_the_files_lstm(engine: Engine, weight: str, tmp_path: Path) -> None:
    """The LSTM's error the window shows (alone and under the whole plan) is the exported
    kernel's error in plain ONNX Runtime, against the float model's LSTM output."""
    plan = _asked(Plan.uniform(engine.info, weight, "uint8 asym"))
    ev = engine.evaluate(plan)
    result = drain(export(engine, plan, tmp_path / "k.onnx", ExportOptions()))
    ours = _with_output(result.path, "y")
    float_model = builders.lstm_recognizer()
    float_model.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
    ref = ort.InferenceSession(float_model.SerializeToString(), providers=["CPUExecutionProvider"])
    sums = metrics.ErrorSums()
    for i in engine.data.evaluation:
        x = engine.data.samples[i]["x"]
        sums.add(ref.run(["y"], {"x": x})[0].ravel(), ours.run(["y"], {"x": x})[0].ravel())
    want = sums.result()
    layer = ev.layers["lstm"]
    for got in (layer.local, layer.accumulated):  # x is the model's input: the same tensor
        assert got is not None
        assert got.max_abs == want.max_abs  # the same kernel on the same codes, bit for bit
        assert got.sqnr_db == pytest.approx(want.sqnr_db, rel=1e-6)  # sums in another order


def test_the_kernel_computes_the_same_from_fed_weights() -> None:
    """What lstm_nodes relies on: DynamicQuantizeLSTM given its codes, scales and zero points
    as graph inputs (the engine's graphs) computes what it does from initializers (the file,
    pre-packed), bit for bit."""
    rng = np.random.default_rng(0)
    d, hidden, k = 2, 8, 5
    consts = {
        "W": rng.integers(-127, 128, (d, k, 4 * hidden)).astype(np.int8),
        "R": rng.integers(-127, 128, (d, hidden, 4 * hidden)).astype(np.int8),
        "ws": (rng.random((d, 4 * hidden)) * 0.01 + 1e-3).astype(np.float32),
        "wz": np.zeros((d, 4 * hidden), np.int8),
        "rs": (rng.random(d) * 0.01 + 1e-3).astype(np.float32),
        "rz": np.zeros(d, np.int8),
    }
    x = rng.standard_normal((7, 3, k)).astype(np.float32)

    def session(fed: bool) -> ort.InferenceSession:
        node = helper.make_node(
            "DynamicQuantizeLSTM", ["x", "W", "R", "", "", "", "", "", "ws", "wz", "rs", "rz"],
            ["y"], domain="com.microsoft", direction="bidirectional", hidden_size=hidden,
        )  # fmt: skip
        ins = [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)]
        ins += [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), None)
                for n, v in consts.items() if fed]  # fmt: skip
        inits = [] if fed else [numpy_helper.from_array(v, n) for n, v in consts.items()]
        g = helper.make_graph(
            [node], "k", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
        )
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13),
                                                helper.make_opsetid("com.microsoft", 1)])  # fmt: skip
        m.ir_version = 8
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])

    const = session(False).run(["y"], {"x": x})[0]
    fed = session(True).run(["y"], {"x": x, **consts})[0]
    np.testing.assert_array_equal(fed, const)


def test_the_lstms_error_follows_the_target(engine: Engine) -> None:
    """The same choice runs the kernel on ``ort-cpu`` only: another target's evaluation of
    the LSTM is the float LSTM behind a dynamic quantizer again, not a cached kernel error."""
    plan = _asked(Plan.uniform(engine.info, "int8 sym ch", "uint8 asym"))
    kernel = engine.evaluate(plan).layers["lstm"].local
    other = engine.evaluate(plan.with_target(targets.NONE)).layers["lstm"].local
    again = engine.evaluate(plan).layers["lstm"].local
    assert kernel is not None and other is not None
    assert other.max_abs != kernel.max_abs and again == kernel
