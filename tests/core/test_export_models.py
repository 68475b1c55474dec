"""End-to-end exports on small CNN, recurrent and transformer-like models.

Every export is reloaded and run in plain ONNX Runtime by the fidelity check
(:mod:`bitlens.core.export.fidelity`); these tests hold it to its rules and
check that it is not vacuous (a corrupted file fails it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.errors import ExportError
from bitlens.core.export.exporter import ExportOptions, ExportResult, export
from bitlens.core.export.fidelity import check_fidelity, default_report_path, export_and_check
from bitlens.core.export.report import FidelityReport
from bitlens.core.model.loader import from_proto, load_model
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests import builders
from tests.core.export_models import conv_net, random_feeds, transformer_block


def make_engine(proto: onnx.ModelProto, n: int = 4) -> Engine:
    model = from_proto(proto)
    return Engine(model, random_feeds(model.info, n), device="cpu")


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    return {
        "cnn": make_engine(conv_net(channels=8)),
        "cnn19": make_engine(conv_net(channels=8, opset=19)),
        "transformer": make_engine(transformer_block(d=32, ff=64)),
        "gru": make_engine(builders.stateful_gru()),
        "lstm_in_if": make_engine(builders.lstm_in_if()),
    }


def run(
    engine: Engine, plan: Plan, path: Path, **options: object
) -> tuple[ExportResult, FidelityReport]:
    gen = export(engine, plan, path, ExportOptions(**options))  # type: ignore[arg-type]
    result = drain(gen)
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    return result, report



# model, weight format, activation format, options
CASES = [
    ("cnn", "int8 sym ch", "uint8 asym", {}),
    ("cnn", "uint8 asym", "int8 sym", {}),
    ("cnn", "int16 sym", "int16 sym", {}),
    ("cnn", "int4 sym ch", "uint8 asym", {}),
    ("cnn", "int4 asym blk8", None, {"weights": "qdq"}),
    ("cnn", "uint4 asym ch", "int4 sym", {"weights": "qdq"}),
    ("cnn", "int3 asym blk8", "uint6 asym", {}),
    ("cnn", "int5 sym ch", "fp16", {}),
    ("cnn", "int6 asym ch", "bf16", {}),
    ("cnn", "int7 sym ch", None, {}),
    ("cnn", "int2 sym ch", "uint8 asym", {}),
    ("cnn", "tern ch", None, {}),
    ("cnn", "bin ch", None, {}),
    ("cnn", "nf4 blk8", "fp16", {}),
    ("cnn", "km3 ch", "int8 asym", {}),
    ("cnn", "log4 ch", None, {}),
    ("cnn", "int8 sym ch", "uint8 asym ch", {}),  # per-channel activations: simulated
    ("transformer", "int4 sym ch", "int8 sym ch", {}),
    ("cnn", "fp16", "fp16", {}),
    ("cnn", "bf16", None, {}),
    ("cnn19", "fp8e4m3fn ch", "fp8e4m3fn", {}),
    ("cnn19", "fp8e5m2 ch", None, {"weights": "qdq"}),
    ("transformer", "int8 sym ch", "uint8 asym", {}),
    ("transformer", "int4 sym blk16", None, {"matmulnbits": True}),
    ("transformer", "uint8 asym blk16", None, {"matmulnbits": True}),
    ("transformer", "nf4 blk16", "fp16", {}),
    ("transformer", "int2 asym blk16", "int4 sym", {}),
    ("gru", "int8 sym ch", "uint8 asym", {}),
    ("gru", "int4 asym blk4", "fp16", {}),
    ("lstm_in_if", "int4 sym ch", None, {}),
    ("lstm_in_if", "km2 ch", None, {}),
]


@pytest.mark.parametrize(("model", "w", "a", "options"), CASES)
def test_export_does_what_the_engine_simulated(
    engines: dict[str, Engine], tmp_path: Path, model: str, w: str, a: str | None, options: dict
) -> None:
    engine = engines[model]
    plan = Plan.uniform(engine.info, w, a)
    result, report = run(engine, plan, tmp_path / "out.onnx", **options)
    assert report.passed, report.failures
    # Rule 2: the file, run as written, is the engine's simulation bit for bit.
    assert all(o.as_written_exact for o in report.outputs)
    # Rule 3: the default session either matches or every quantizer stays within 1 LSB, over
    # the whole model or, where differences accumulate, kernel by kernel.
    for q in report.quantizers:
        if q.local_lsb is not None:
            assert q.local_lsb <= 1
        elif q.max_lsb is not None:
            assert q.max_lsb <= 1
    # Rule 1: every planned weight is stored, exact, in its bit width; none left in float.
    exported = onnx.load(str(result.path))
    floats = {t.name for t in exported.graph.initializer if t.data_type == TensorProto.FLOAT}
    for layer in report.layers:
        assert layer.ok, layer.problems
        for wc in layer.weights:
            assert wc.exact
            assert wc.weight not in floats
    assert abs(report.weights_size_error) < 0.05  # tiny layers: zero points and padding count
    assert report.latency is not None and report.latency.export_ms > 0


def test_integer_kernels_run_where_the_plan_allows_them(
    engines: dict[str, Engine], tmp_path: Path
) -> None:
    cnn = engines["cnn"]
    _, report = run(cnn, Plan.preset(cnn.info, "W8A8"), tmp_path / "cnn.onnx")
    kernels = {la.name: la.kernel for la in report.layers}
    # The ort-cpu target quantizes conv3's output (and GlobalAveragePool's): QLinearConv too.
    assert kernels["conv1"] == "QLinearConv" and kernels["conv2"] == "QLinearConv"
    assert kernels["conv3"] == "QLinearConv"
    assert kernels["fc"] == "QGemm"  # needs the int32 bias
    # Target "none" quantizes layer inputs only: conv3 feeds GlobalAveragePool, whose output
    # the plan does not quantize, so ONNX Runtime keeps it in float.
    plan_none = Plan.preset(cnn.info, "W8A8").with_target("none")
    _, report_none = run(cnn, plan_none, tmp_path / "cnn_none.onnx")
    kernels_none = {la.name: la.kernel for la in report_none.layers}
    assert "QLinear" not in kernels_none["conv3"]
    # conv1 -> Relu -> MaxPool -> conv2 runs as one fused chain: conv2's input codes exist only
    # inside it, so the 1-LSB rule is checked on that segment alone.
    conv2 = next(q for q in report.quantizers if q.layer == "conv2")
    assert conv2.max_lsb is None and conv2.local_lsb is not None and conv2.local_lsb <= 1
    (y,) = report.outputs
    assert y.local_max_abs is not None and y.local_tolerance is not None
    assert y.local_max_abs <= y.local_tolerance
    tr = engines["transformer"]
    _, report = run(tr, Plan.preset(tr.info, "W8A8"), tmp_path / "tr.onnx")
    assert {la.kernel for la in report.layers} == {"MatMulIntegerToFloat"}
    _, report = run(tr, Plan.preset(tr.info, "W8A8"), tmp_path / "tr2.onnx", int32_bias=False)
    assert report.passed


def test_fp16_and_low_bit_activations_are_flagged_as_simulated(
    engines: dict[str, Engine], tmp_path: Path
) -> None:
    engine = engines["cnn"]
    _, report = run(engine, Plan.uniform(engine.info, "int4 sym ch", "fp16"), tmp_path / "o.onnx")
    assert report.quantizers and all(q.simulated for q in report.quantizers)
    assert any("simulated in float" in n for n in report.notes)
    assert "Cast to fp16" in report.layers[0].activation_scheme


def test_dynamic_activations_use_the_engines_run_time_range(
    engines: dict[str, Engine], tmp_path: Path
) -> None:
    engine = engines["transformer"]
    dyn = LayerChoice.of("int8 sym ch", "uint8 asym", dynamic=True)
    plan = Plan(engine.info, {"ff1": dyn, "ff2": dyn})
    result, report = run(engine, plan, tmp_path / "o.onnx")
    assert report.passed and all(o.as_written_exact for o in report.outputs)
    ops = {n.op_type for n in onnx.load(str(result.path)).graph.node}
    assert {"ReduceMin", "ReduceMax"} <= ops


def test_weights_dominated_file_shrinks_as_planned(tmp_path: Path) -> None:
    """x[N,1024] -> MatMul(W1[1024,1024]) -> Relu -> MatMul(W2[1024,1024]) -> y: 8 MiB of float.

    1-bit and 2-bit files hold 1/32 and 1/16 of the float weight bytes plus one float32
    scale per channel and the small reconstruction subgraphs.
    """
    rng = np.random.default_rng(0)
    d = 1024
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.05, (d, d)).astype(np.float32), n)
        for n in ("W1", "W2")
    ]
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W1"], ["h"], name="mm1"),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "W2"], ["y"], name="mm2"),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", d])],
        inits,
    )
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 9
    engine = make_engine(proto, n=2)
    float_bytes = 2 * d * d * 4
    for fmt, ratio in (("bin ch", 32), ("tern ch", 16), ("int2 sym ch", 16)):
        result, report = run(engine, Plan.uniform(engine.info, fmt), tmp_path / "o.onnx")
        assert report.passed, report.failures
        payload = float_bytes / ratio + 2 * d * 4  # codes + per-channel float32 scales
        assert payload <= result.file_bytes <= payload * 1.02 + 4096
        assert abs(report.weights_size_error) < 0.001
        assert abs(report.file_size_error) < 0.02


def test_source_is_untouched_and_write_is_atomic(tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    onnx.save(conv_net(channels=4), str(src))
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    model = load_model(src)
    engine = Engine(model, random_feeds(model.info, 2), device="cpu")
    plan = Plan.preset(engine.info, "W4A8")
    out = tmp_path / "model_w4a8.onnx"
    report = drain(export_and_check(engine, plan, out, latency_budget_s=0.0))
    assert report.passed
    assert hashlib.sha256(src.read_bytes()).hexdigest() == digest
    saved = json.loads(default_report_path(out).read_text())
    assert saved["passed"] is True and saved["export"] == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.onnx", "model_w4a8.fidelity.json", "model_w4a8.onnx"
    ]  # fmt: skip
    with pytest.raises(ExportError, match="refusing to overwrite the source"):
        drain(export(engine, plan, src))


def test_cancelled_export_writes_nothing(engines: dict[str, Engine], tmp_path: Path) -> None:
    engine = engines["cnn"]
    gen = export(engine, Plan.preset(engine.info, "W8A8"), tmp_path / "o.onnx")
    progress = [next(gen), next(gen)]  # the opset choice, then the first layer
    assert progress[-1].done == 1
    gen.close()
    assert list(tmp_path.iterdir()) == []


def test_cancel_after_the_check_writes_nothing(engines: dict[str, Engine], tmp_path: Path) -> None:
    # A Cancel that lands after the check's last progress: the job stops at the final
    # "writing" step, before the export is renamed into place (it was written before).
    engine = engines["cnn"]
    plan = Plan.preset(engine.info, "W8A8")
    gen = export_and_check(engine, plan, tmp_path / "o.onnx", latency_budget_s=0.0)
    last = next(gen)
    while last.message != "writing the export":
        last = next(gen)
    gen.close()
    assert list(tmp_path.iterdir()) == []


def test_float_layers_stay_untouched(engines: dict[str, Engine], tmp_path: Path) -> None:
    engine = engines["cnn"]
    plan = Plan(engine.info, {"conv2": LayerChoice.of("int4 sym ch", "uint8 asym")})
    result, report = run(engine, plan, tmp_path / "o.onnx")
    assert report.passed and [la.name for la in report.layers] == ["conv2"]
    src = {t.name: t for t in engine.model.proto.graph.initializer}
    out = {t.name: t for t in onnx.load(str(result.path)).graph.initializer}
    for name in ("W1", "b1", "W3", "b3", "W4", "b4"):
        assert out[name] == src[name]
    assert "W2" not in out


def test_old_opset_is_upgraded_and_verified(tmp_path: Path) -> None:
    """Opset 12 with Constant-node weights: folded weights need opset 13, so the export
    converts the model to 13 (the lowest the plan needs), checks the float outputs are
    unchanged, and says so."""
    engine = make_engine(builders.opset12_constant_weights())
    result, report = run(engine, Plan.uniform(engine.info, "int3 sym ch", "uint8 asym"), tmp_path / "o.onnx")  # fmt: skip
    assert (result.source_opset, result.opset, result.converted) == (12, 13, True)
    assert report.passed and report.min_ort == "1.20"
    assert any("upgraded from opset 12 to 13" in n for n in report.notes)
    constants = {
        n.output[0] for n in onnx.load(str(result.path)).graph.node if n.op_type == "Constant"
    }
    weights = {w.name for layer in engine.info.layers for w in layer.weights}
    assert constants and not constants & weights  # weight Constants replaced, biases kept


def test_native_int2_needs_opset_25(engines: dict[str, Engine], tmp_path: Path) -> None:
    engine = engines["cnn"]
    plan = Plan.uniform(engine.info, "int2 sym ch")
    result, report = run(engine, plan, tmp_path / "o.onnx", weights="qdq", int2_qdq=True)
    assert (result.opset, result.min_ort) == (25, "1.24")
    assert report.passed, report.failures
    codes = [
        t for t in onnx.load(str(result.path)).graph.initializer if t.data_type == TensorProto.INT2
    ]
    assert len(codes) == 4


def test_matmulnbits_min_runtime(engines: dict[str, Engine], tmp_path: Path) -> None:
    engine = engines["transformer"]
    result, report = run(
        engine, Plan.uniform(engine.info, "int8 sym blk16"), tmp_path / "o.onnx", matmulnbits=True
    )
    assert report.passed and result.min_ort == "1.23"
    assert {la.kernel for la in report.layers} == {"MatMulNBits"}


def test_qdq_weights_on_matmul_stay_out_of_ort_hidden_rewrite(
    engines: dict[str, Engine], tmp_path: Path
) -> None:
    """ONNX Runtime (1.31) rewrites a constant DequantizeLinear feeding MatMul into MatMulNBits
    with int8 activations (FACTS.md); the check caught that and failed. The export now keeps
    the weights out of the pattern, so the deployed run is the file's float MatMul."""
    engine = engines["transformer"]
    plan = Plan.uniform(engine.info, "int4 sym blk16")
    _, report = run(engine, plan, tmp_path / "o.onnx", weights="qdq")
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)
    assert "MatMulNBits" not in {la.kernel for la in report.layers}


def test_tampered_export_fails_the_check(engines: dict[str, Engine], tmp_path: Path) -> None:
    engine = engines["cnn"]
    plan = Plan.uniform(engine.info, "int3 sym ch", "uint8 asym")
    path = tmp_path / "o.onnx"
    result, report = run(engine, plan, path)
    assert report.passed
    model = onnx.load(str(path))
    codes = next(
        t
        for t in model.graph.initializer
        if t.name == result.layers["conv2"].weights[0].stored[0].name
    )
    raw = bytearray(codes.raw_data)
    raw[0] ^= 0b111  # one code of conv2's weight changes
    codes.raw_data = bytes(raw)
    onnx.save(model, str(path))
    bad = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert not bad.passed
    assert any("conv2" in f and "differs from the simulated" in f for f in bad.failures)
    assert any("run as written differs from the engine" in f for f in bad.failures)


def test_conflicting_formats_on_a_shared_weight_are_refused(tmp_path: Path) -> None:
    """x -> MatMul(W) -> Relu -> MatMul(W) -> y, one weight used by two layers."""
    w = np.random.default_rng(0).normal(0, 0.3, (8, 8)).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="a"),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "W"], ["y"], name="b"),
        ],
        "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [numpy_helper.from_array(w, "W")],
    )
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 9
    engine = make_engine(proto)
    same = Plan.uniform(engine.info, "int4 sym ch")
    _, report = run(engine, same, tmp_path / "same.onnx")
    assert report.passed
    choices = {"a": LayerChoice.of("int4 sym ch"), "b": LayerChoice.of("int8 sym ch")}
    mixed = Plan(engine.info, choices)  # a plan gives a shared weight's readers one format
    assert mixed["b"].weight == mixed["a"].weight and len(mixed.notes) == 1
    mixed._choices = MappingProxyType(choices)  # split behind Plan's back: the export refuses
    with pytest.raises(ExportError, match="shared by several layers"):
        drain(export(engine, mixed, tmp_path / "mixed.onnx"))
