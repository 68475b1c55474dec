"""The fidelity verdict's levels: no alarm over float reordering, an alarm over NaN and over
results that change (bitlens.core.export.verdict)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import verdict
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.core.export_models import attention_block, random_feeds


def _check(engine: Engine, plan: Plan, path: Path):
    result = drain(export(engine, plan, path, ExportOptions()))
    return drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))


@pytest.fixture(scope="module")
def attention() -> Engine:
    model = from_proto(attention_block())
    engine = Engine(model, random_feeds(model.info, 3, dims={"S": 16}), device="cpu")
    for _ in engine.calibrate():
        pass
    return engine


def test_ort_fusions_reorder_this_graph() -> None:
    """The premise: ORT_ENABLE_ALL changes the float result of the attention block."""
    m = attention_block()
    x = np.random.default_rng(1).normal(0, 1, (2, 16, 32)).astype(np.float32)
    outs = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {"x": x})[0])
    assert not np.array_equal(outs[0], outs[1])


@pytest.mark.parametrize(
    ("w", "a"), [("fp16", "fp16"), ("tern ch", None), ("int4 sym blk32", "fp16"), ("bin ch", None)]
)
def test_float_reordering_is_not_a_failure(
    attention: Engine, tmp_path: Path, w: str, a: str | None
) -> None:
    report = _check(attention, Plan.uniform(attention.info, w, a), tmp_path / "o.onnx")
    assert report.passed, report.failures
    # The file is compared with the engine's graph run the same way: bit for bit.
    assert all(o.as_written_exact for o in report.outputs)
    assert {o.level for o in report.outputs} <= {verdict.BIT_EXACT, verdict.REASSOCIATION}


def _overflow_model() -> onnx.ModelProto:
    """x[N,8] -> MatMul(W1, entries ~3e5) -> h (|h| ~ 1e6) -> MatMul(W2) -> y[N,4].

    Finite in fp32; h cast to fp16 (max 65504) is infinite, and inf - inf in W2's sums NaN.
    """
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 3e5, (8, 16)).astype(np.float32)
    w2 = rng.normal(0, 1, (16, 4)).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W1"], ["h"], name="big"),
            helper.make_node("MatMul", ["h", "W2"], ["y"], name="head"),
        ],
        "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def test_export_whose_output_is_nan_fails_naming_the_layer(tmp_path: Path) -> None:
    model = from_proto(_overflow_model())
    x = np.random.default_rng(1).normal(0, 1, (4, 2, 8)).astype(np.float32)
    engine = Engine(model, Dataset(tuple({"x": v} for v in x), source="test"), device="cpu")
    for _ in engine.calibrate():
        pass
    report = _check(engine, Plan.preset(model.info, "W8A16"), tmp_path / "o.onnx")
    assert not report.passed
    (y,) = report.outputs
    assert y.nonfinite
    nan = [f for f in report.failures if "NaN" in f]
    assert nan and "'head'" in nan[0] and "fp16" in nan[0]


def test_tolerance_follows_the_narrowest_float_type() -> None:
    ref = np.array([[-3.0, 2.0]], np.float32)
    model = from_proto(attention_block())
    fp32 = verdict.narrowest_roundoff(Plan.uniform(model.info, "int8 sym ch", None), ref.dtype)
    fp16 = verdict.narrowest_roundoff(Plan.uniform(model.info, "fp16", "fp16"), ref.dtype)
    assert fp32 == 2.0**-24 and fp16 == 2.0**-11
    assert verdict.reassociation_tolerance(ref, fp32) == pytest.approx(3.0 * 2.0**-13)
    assert verdict.reassociation_tolerance(ref, fp16) == pytest.approx(3.0 * 2.0**-10)
    assert verdict.reassociation_tolerance(np.array([1, 2]), fp16) == 0.0  # labels: exact


def test_top1_changes_ignore_near_ties_only() -> None:
    want = [np.array([[1.0, 1.00001, 0.0], [5.0, 1.0, 0.0]], np.float32)]
    tie_flip = [np.array([[1.00002, 1.00001, 0.0], [5.0, 1.0, 0.0]], np.float32)]
    real_flip = [np.array([[1.0, 1.00001, 0.0], [1.0, 5.0, 0.0]], np.float32)]
    assert verdict.top1_changes(want, tie_flip, 1e-3) == (0.5, 0)
    assert verdict.top1_changes(want, real_flip, 1e-3) == (0.5, 1)
    labels = [np.array([3, 4, 5])]
    assert verdict.top1_changes(labels, [np.array([3, 4, 6])], 0.0) == (pytest.approx(2 / 3), 1)
    assert verdict.looks_like_classes(np.zeros((2, 10), np.float32), True)
    assert verdict.looks_like_classes(np.zeros((1, 7), np.int64), False)
    assert not verdict.looks_like_classes(np.zeros((2, 8, 32), np.float32), False)
    assert not verdict.looks_like_classes(np.zeros((2, 384), np.float32), False)  # embedding
    assert verdict.looks_like_classes(np.zeros((2, 8, 32), np.float32), True)


def test_eval_warns_naming_the_layer_that_made_nan(tmp_path: Path, capsys) -> None:
    from bitlens.cli import main

    path = tmp_path / "overflow.onnx"
    onnx.save(_overflow_model(), str(path))
    assert main(["eval", str(path), "--preset", "W8A16", "--samples", "4", "--dim", "N=2"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "NaN" in err and "'head'" in err
    assert main(["eval", str(path), "--preset", "W8A8", "--samples", "4", "--dim", "N=2"]) == 0
    assert "NaN" not in capsys.readouterr().err


def test_kmeans_per_channel_on_a_matmul_exports_and_checks(attention: Engine, tmp_path: Path) -> None:
    """km4 ch on a MatMul quantizes along the weight's last axis (its output channels); the
    check compared the rebuilt weight through a byte view of a transposed array and crashed
    ("the last axis must be contiguous")."""
    plan = Plan.uniform(attention.info, "km4 ch")
    weight = attention.info.layer("ff1").weights[0]
    from bitlens.core.engine import bind

    assert not attention.quantized_weight(weight, bind(plan["ff1"].weight, weight)).flags.c_contiguous
    report = _check(attention, plan, tmp_path / "o.onnx")
    assert report.passed, report.failures
    assert all(wc.exact for la in report.layers for wc in la.weights)


@pytest.mark.parametrize(
    ("sample", "preset"),
    [("text_transformer", "fp16"), ("text_transformer", "W2A16"), ("speech_kws", "ternary")],
)
def test_bundled_samples_pass_where_the_check_cried_wolf(
    tmp_path: Path, sample: str, preset: str
) -> None:
    """These exports ran as simulated and were failed over ORT's reordering (2e-7 to 8e-4)."""
    from bitlens.core.model.loader import load_model

    root = Path(__file__).parents[2] / "resources" / "samples" / sample
    model = load_model(root / "model.onnx")
    data = Dataset.from_npz(root / "data.npz", model.info)
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate():
        pass
    report = _check(engine, Plan.preset(model.info, preset), tmp_path / "o.onnx")
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)
    assert abs(report.file_size_error) <= 0.02
