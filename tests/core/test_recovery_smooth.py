"""SmoothQuant-style migration: the scales against the paper's formula in float64, the
engine's simulation against a numpy reference of ``Q_a(x / s) Q_w(W s)``, the gain at W8A8
with an outlier input channel, and export + fidelity (the multiply before the quantizer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import PlanError
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.formats import fake_quantize, parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery import Recovery
from bitlens.core.recovery.compare import method_rows
from bitlens.core.recovery.problem import InputStats, geometry
from bitlens.core.recovery.smooth import ALPHAS, migration_scales
from bitlens.core.results import drain
from tests import builders
from tests.core.export_models import conv_net, random_feeds

W8, A8 = "int8 sym ch", "int8 asym"


@pytest.fixture(scope="module")
def mlp() -> Engine:
    model = from_proto(builders.outlier_mlp())
    return Engine(model, Dataset(tuple(builders.outlier_feeds()), source="test"), device="cpu")


def _plan(engine: Engine, method: str | None, act: str | None = A8) -> Plan:
    return Plan(engine.info, {"fc1": LayerChoice.of(W8, act, False, method)})


@pytest.mark.parametrize("attrs", [{}, {"group": 2, "pads": [1, 1, 1, 1]}])
def test_scales_are_max_x_to_alpha_over_max_w_to_one_minus_alpha(attrs: dict) -> None:
    rng = np.random.default_rng(0)
    if attrs:  # a grouped conv: channel c's weights sit in its group's rows
        w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
        x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
        geo = geometry("Conv", w.shape, attrs, 1)
        x_max = np.abs(x).max(axis=(0, 2, 3))
        w_max = np.concatenate([np.abs(w[:3]).max(axis=(0, 2, 3)), np.abs(w[3:]).max(axis=(0, 2, 3))])
    else:
        w = rng.standard_normal((8, 5)).astype(np.float32)
        x = rng.standard_normal((7, 8)).astype(np.float32) * np.arange(1, 9, dtype=np.float32)
        geo = geometry("MatMul", w.shape, {}, 1)
        x_max, w_max = np.abs(x).max(axis=0), np.abs(w).max(axis=1)
    s = migration_scales(w, geo, InputStats.of(geo, [x]))
    np.testing.assert_allclose(s, np.sqrt(x_max.astype(np.float64) / w_max), rtol=1e-6)


def test_engine_computes_the_quantized_scaled_layer(mlp: Engine) -> None:
    """The model's output under SmoothQuant on fc1 equals numpy's
    ``relu(Q_a(x * (1/s)) Q_w(W1 s)) W2 + b2``, the quantizer's range the min and max of
    the scaled calibration inputs."""
    plan = _plan(mlp, "smoothquant")
    layer = mlp.info.layer("fc1")
    rec = mlp.recovery.of(layer, plan["fc1"])
    inv = rec.act_scale
    w1 = mlp.model.weight(layer.weights[0]).astype(np.float64)
    s = 1.0 / inv.astype(np.float64)
    np.testing.assert_allclose(  # s rebuilt from 1/s: equal codes, scales within an ulp
        rec.weight, fake_quantize((w1 * s[:, None]).astype(np.float32), parse_format("int8 sym ch1")),
        rtol=1e-6,
    )
    xs = [mlp.data.samples[i]["x"] * inv for i in mlp.data.calibration]
    lo, hi = min(float(x.min()) for x in xs), max(float(x.max()) for x in xs)
    w2 = mlp.model.weight(mlp.info.layer("fc2").weights[0]).astype(np.float64)
    b2 = mlp.model.weight("b2").astype(np.float64)
    got = mlp.run_outputs(plan)["y"]
    for i, y in zip(mlp.data.evaluation, got, strict=True):
        xq = fake_quantize(mlp.data.samples[i]["x"] * inv, parse_format(A8), value_range=(lo, hi))
        want = np.maximum(xq.astype(np.float64) @ rec.weight.astype(np.float64), 0) @ w2 + b2
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_smoothquant_reduces_w8a8_error_with_an_outlier_channel(mlp: Engine) -> None:
    plain = mlp.evaluate(_plan(mlp, None))
    smooth = mlp.evaluate(_plan(mlp, "smoothquant"))
    gain_local = smooth.layers["fc1"].local.sqnr_db - plain.layers["fc1"].local.sqnr_db
    gain_out = smooth.outputs["y"].error.sqnr_db - plain.outputs["y"].error.sqnr_db
    assert gain_local > 3.0 and gain_out > 2.0, (gain_local, gain_out)
    # the sandbox shows it with the planned activations, and only there
    rows = {r.method: r for r in method_rows(mlp, mlp.info.layer("fc1"), parse_format(W8),
                                             parse_format(A8))}  # fmt: skip
    assert rows["smoothquant"].sqnr_db > rows["plain"].sqnr_db + 3.0
    assert "bias created" in rows["bias_correction"].note  # fc1 has none: it gets one


def test_plan_json_and_refusals(mlp: Engine) -> None:
    plan = _plan(mlp, "smoothquant")
    data = plan.to_dict()
    assert data["layers"]["fc1"]["recovery"] == "smoothquant"
    assert Plan.from_dict(mlp.info, data)["fc1"].recovery is Recovery.SMOOTH
    with pytest.raises(PlanError, match="smoothquant needs a scaled weight format"):
        Plan(mlp.info, {"fc1": LayerChoice.of("fp16", A8, False, "smoothquant")})


EXPORTS = [
    ("mlp", W8, A8, {}),  # integer kernel (MatMulIntegerToFloat) after the multiply
    ("mlp", "int4 sym ch", None, {}),  # weight-only: the multiply alone, bit exact
    ("mlp", W8, "uint8 asym", {"weights": "qdq"}),
    ("cnn", W8, "uint8 asym", {}),  # Conv: the multiply per channel (C, 1, 1)
]


@pytest.mark.parametrize(("key", "wfmt", "afmt", "options"), EXPORTS)
def test_smoothquant_exports_exactly(
    mlp: Engine, tmp_path: Path, key: str, wfmt: str, afmt: str | None, options: dict
) -> None:
    if key == "mlp":
        engine = mlp
    else:
        model = from_proto(conv_net(channels=8))
        engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    info = engine.info
    plan = Plan(info, {la.name: LayerChoice.of(wfmt, afmt, False, "smoothquant")
                       for la in info.layers})  # fmt: skip
    result = drain(export(engine, plan, tmp_path / "m.onnx", ExportOptions(**options)))
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)
    assert all(wc.exact for lc in report.layers for wc in lc.weights)
    if afmt is None:
        assert all(o.deployed_exact for o in report.outputs)
    saved = onnx.load(str(result.path))
    inits = {t.name: numpy_helper.to_array(t) for t in saved.graph.initializer}
    layer = info.layers[0]
    rec = engine.recovery.of(layer, plan[layer.name])
    _, node = next((i, n) for i, n in enumerate(saved.graph.node)
                   if n.op_type == "Mul" and n.input[0] == layer.inputs[0])  # fmt: skip
    np.testing.assert_array_equal(inits[node.input[1]], rec.act_scale)
    if key == "cnn":
        engine.close()


@pytest.mark.parametrize(("method", "act"), [("awq", None), ("smoothquant", A8),
                                             ("bias_correction", None)])  # fmt: skip
def test_recovery_constants_are_accounted(
    mlp: Engine, tmp_path: Path, method: str, act: str | None
) -> None:
    """AWQ's and SmoothQuant's scales and a created bias count in the plan's bytes (the
    table's Size) and in the export's layer records; the predicted file is the written one."""
    from bitlens.core.export import accounting

    plan = Plan(mlp.info, {"fc1": LayerChoice.of("int4 asym blk8", act, False, method)})
    rec = mlp.recovery.of(mlp.info.layer("fc1"), plan["fc1"])
    extra = {"awq": rec.input_scale, "smoothquant": rec.act_scale, "bias_correction": rec.bias}[method]
    assert extra is not None
    size = drain(accounting.predict(mlp, plan))
    result = drain(export(mlp, plan, tmp_path / "m.onnx", ExportOptions()))
    assert (tmp_path / "m.onnx").stat().st_size == size.file_bytes == result.file_bytes
    plain_plan = Plan(mlp.info, {"fc1": LayerChoice.of("int4 asym blk8", act)})
    plain = mlp.evaluate(plain_plan).layers["fc1"].bytes_after
    after = mlp.evaluate(plan).layers["fc1"].bytes_after
    assert after == plain + 4 * extra.size == result.layers["fc1"].bytes_planned
    assert result.layers["fc1"].bytes_stored == after  # codes, scales, and the constant


def test_alpha_search_picks_the_least_error_on_calibration(mlp: Engine) -> None:
    """The chosen alpha's layer error (input quantized as planned, on the calibration feeds)
    is the least of the grid's, each candidate measured directly in float64 numpy."""
    layer = mlp.info.layer("fc1")
    rec = mlp.recovery.of(layer, _plan(mlp, "smoothquant")["fc1"])
    w = mlp.model.weight(layer.weights[0]).astype(np.float64)
    xs = [mlp.data.samples[i]["x"] for i in mlp.data.calibration]
    geo = geometry("MatMul", w.shape, {}, 1)
    stats = InputStats.of(geo, xs)

    def error(inv: np.ndarray, wq: np.ndarray) -> float:
        scaled = [x * inv for x in xs]
        lo, hi = min(float(v.min()) for v in scaled), max(float(v.max()) for v in scaled)
        return sum(float(np.sum((fake_quantize(v, parse_format(A8), value_range=(lo, hi))
                                 .astype(np.float64) @ wq - x.astype(np.float64) @ w) ** 2))
                   for x, v in zip(xs, scaled, strict=True))  # fmt: skip

    errs = {}
    for alpha in ALPHAS:
        s = migration_scales(w.astype(np.float32), geo, stats, alpha)
        wq = fake_quantize((w.astype(np.float32) * s[:, None]).astype(np.float32),
                           parse_format("int8 sym ch1")).astype(np.float64)  # fmt: skip
        errs[alpha] = error((np.float32(1) / s).astype(np.float32), wq)
    got = error(rec.act_scale, rec.weight.astype(np.float64))
    assert got == pytest.approx(min(errs.values()), rel=1e-6)
    assert f"alpha {min(errs, key=errs.get):.2f}" in rec.note
