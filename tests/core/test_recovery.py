"""Recovery methods against float64 references: im2col against ONNX Runtime's Conv, GPTQ
against the plain OBQ/GPTQ recursion with an explicitly updated inverse, bias correction
against the measured mean output shift, AWQ and clipping search against plain rounding."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import EngineError, PlanError
from bitlens.core.formats import fake_quantize, parse_format, quantize
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery import Recovery, decode
from bitlens.core.recovery.awq import awq
from bitlens.core.recovery.bias import bias_correction
from bitlens.core.recovery.clip import clip_search
from bitlens.core.recovery.compare import method_rows
from bitlens.core.recovery.gptq import gptq, gptq_codes
from bitlens.core.recovery.problem import InputStats, geometry, output_error
from tests import builders


def _conv_ort(x, w, **attrs) -> np.ndarray:
    """y = Conv(x, w) run by ONNX Runtime (the independent reference)."""
    node = helper.make_node("Conv", ["x", "w"], ["y"], **attrs)
    g = helper.make_graph(
        [node], "c",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, w.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
    )  # fmt: skip
    sess = ort.InferenceSession(builders.model(g).SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x, "w": w})[0]


CONVS = [
    dict(pads=[1, 1, 1, 1]),
    dict(strides=[2, 2], pads=[0, 1, 2, 1], dilations=[1, 2]),
    dict(group=2, pads=[1, 1, 1, 1]),
    dict(group=4, auto_pad="SAME_UPPER", strides=[2, 2]),  # depthwise
]


@pytest.mark.parametrize("attrs", CONVS)
def test_im2col_features_reproduce_ort_conv(attrs: dict) -> None:
    rng = np.random.default_rng(0)
    g = attrs.get("group", 1)
    x = rng.standard_normal((2, 4, 7, 9)).astype(np.float32)
    w = rng.standard_normal((8, 4 // g, 3, 3)).astype(np.float32)
    geo = geometry("Conv", w.shape, attrs, 1)
    f = geo.features(x)  # (n, groups, cols)
    y = np.einsum("ngc,grc->ngr", f, geo.to_2d(w.astype(np.float64))).reshape(len(f), -1)
    ref = _conv_ort(x, w, **attrs)
    got = y.reshape(2, *ref.shape[2:], 8).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # the Hessian form of the output error equals the error measured on the outputs
    dw = rng.standard_normal(w.shape).astype(np.float32) * 0.1
    err = output_error(geo, InputStats.of(geo, [x]), dw).sum()
    direct = np.sum((_conv_ort(x, w + dw, **attrs).astype(np.float64) - ref) ** 2)
    assert err == pytest.approx(direct, rel=1e-4)


def _obq_reference(w, h, scale, zp, qmin, qmax):
    """GPTQ's fixed-order recursion written out (Frantar et al. 2022, eq. 2-3): quantize
    column q, spread its error with the current inverse Hessian, remove q from the inverse."""
    w = w.astype(np.float64).copy()
    hinv = np.linalg.inv(h + 0.01 * np.mean(np.diag(h)) * np.eye(len(h)))
    codes = np.zeros(w.shape, np.int64)
    for q in range(w.shape[1]):
        c = np.clip(np.rint(w[:, q] / scale[:, q]) + zp[:, q], qmin, qmax)
        codes[:, q] = c
        err = (w[:, q] - (c - zp[:, q]) * scale[:, q]) / hinv[q, q]
        w -= np.outer(err, hinv[q, :])
        hinv = hinv - np.outer(hinv[:, q], hinv[q, :]) / hinv[q, q]
    return codes


def test_gptq_matches_the_explicit_recursion_and_beats_rounding() -> None:
    rng = np.random.default_rng(1)
    k, n, m = 40, 6, 400
    x = rng.standard_normal((m, k)) @ rng.standard_normal((k, k)) * 0.3  # correlated inputs
    w = rng.standard_normal((n, k))
    h = 2 * x.T @ x
    fmt = parse_format("int4 sym ch0")
    q0 = quantize(w.astype(np.float32), fmt)
    scale = np.broadcast_to(q0.scale.astype(np.float64)[:, None], w.shape)
    zp = np.broadcast_to(q0.zero_point.astype(np.float64)[:, None], w.shape)
    got = gptq_codes(w, h, scale, zp, fmt.qmin, fmt.qmax, block=16)  # blocks of 16 + a tail
    want = _obq_reference(w, h, scale, zp, fmt.qmin, fmt.qmax)
    assert np.mean(got == want) > 0.99  # rounding ties may flip a code or two
    wq = (got - zp) * scale
    rtn = fake_quantize(w.astype(np.float32), fmt).astype(np.float64)
    assert np.sum(((wq - w) @ x.T) ** 2) < 0.7 * np.sum(((rtn - w) @ x.T) ** 2)


def _gemm_problem(seed: int = 2, n: int = 8, k: int = 24):
    rng = np.random.default_rng(seed)
    w = builders.weights((n, k), seed=seed)  # Gemm transB=1: [N, K]
    x = (rng.standard_normal((300, k)) * np.linspace(0.1, 3, k) + 0.5).astype(np.float32)
    geo = geometry("Gemm", w.shape, {"transB": 1}, 1)
    return w, x, geo, InputStats.of(geo, [x])


def test_gptq_keeps_the_plain_scales_and_lowers_output_error() -> None:
    w, _x, geo, st = _gemm_problem()
    fmt = parse_format("int3 asym ch0")
    rec = gptq(w, fmt, geo, st)
    plain = quantize(w, fmt)
    np.testing.assert_array_equal(rec.qtensor.scale, plain.scale)
    np.testing.assert_array_equal(rec.qtensor.zero_point, plain.zero_point)
    np.testing.assert_array_equal(decode(rec), rec.weight)
    e_rec = output_error(geo, st, rec.weight.astype(np.float64) - w).sum()
    e_rtn = output_error(geo, st, fake_quantize(w, fmt).astype(np.float64) - w).sum()
    assert e_rec < e_rtn


def test_bias_correction_zeroes_the_mean_output_shift() -> None:
    w, x, geo, st = _gemm_problem(3)
    b = builders.bias(8, seed=4)
    rec = bias_correction(w, b, parse_format("int3 sym ch0"), geo, st)
    y = x.astype(np.float64) @ w.T.astype(np.float64) + b
    yq = x.astype(np.float64) @ rec.weight.T.astype(np.float64) + rec.bias
    plain = x.astype(np.float64) @ rec.weight.T.astype(np.float64) + b
    np.testing.assert_allclose((yq - y).mean(axis=0), 0, atol=1e-5)
    assert np.abs((plain - y).mean(axis=0)).max() > 1e-3  # there was a shift to remove
    # without a bias the layer gets one: the same correction from zero
    made = bias_correction(w, None, parse_format("int3 sym ch0"), geo, st)
    np.testing.assert_allclose(made.bias, rec.bias - b, atol=1e-6)
    with pytest.raises(EngineError, match="one bias per output"):
        bias_correction(w, b[:3], parse_format("int3 sym ch0"), geo, st)


@pytest.mark.parametrize("fmt", ["int4 sym ch0", "int4 asym blk8@1", "int3 sym"])
def test_awq_and_clip_search_never_lose_to_rounding_on_calibration(fmt: str) -> None:
    w, _x, geo, st = _gemm_problem(5)
    f = parse_format(fmt)
    e_rtn = output_error(geo, st, fake_quantize(w, f).astype(np.float64) - w)
    a = awq(w, f, geo, st)
    np.testing.assert_array_equal(decode(a).astype(np.float32), a.weight)
    assert output_error(geo, st, a.weight.astype(np.float64) - w).sum() <= e_rtn.sum()
    c = clip_search(w, f, geo, st)
    e_clip = output_error(geo, st, c.weight.astype(np.float64) - w)
    if f.granularity.value == "tensor":
        assert e_clip.sum() <= e_rtn.sum()
    else:  # each output row picks its own ratio, 1.0 (plain min-max) among them
        assert np.all(e_clip <= e_rtn * (1 + 1e-9))


def test_plan_json_round_trips_recovery_and_old_plans_load_unchanged() -> None:
    info = from_proto(builders.conv_net()).info
    plan = Plan(info, {"conv1": LayerChoice.of("int4 sym ch", None, False, "gptq")})
    data = plan.to_dict()
    assert data["layers"]["conv1"]["recovery"] == "gptq"
    assert Plan.from_dict(info, data)["conv1"].recovery.value == "gptq"
    old = Plan(info, {"conv1": LayerChoice.of("int4 sym ch")}).to_dict()
    assert "recovery" not in old["layers"]["conv1"]
    assert Plan.from_dict(info, old)["conv1"].recovery is None
    bad = {**old, "layers": {"conv1": {"weight": "int4 sym ch", "recovery": "gptqq"}}}
    with pytest.raises(PlanError, match="unknown recovery method 'gptqq'"):
        Plan.from_dict(info, bad)
    with pytest.raises(PlanError, match="needs an integer weight format"):
        Plan(info, {"conv1": LayerChoice.of("nf4 blk8", None, False, "gptq")})
    with pytest.raises(PlanError, match="needs a weight format"):
        Plan(info, {"conv1": LayerChoice.of(None, None, False, "awq")})


def test_sandbox_rows_equal_the_layer_output_error_measured_directly() -> None:
    model = from_proto(builders.conv_net())
    engine = Engine(model, Dataset.random(model.info, n=6, seed=3), device="cpu")
    layer = model.info.layer("conv2")
    fmt = parse_format("int3 sym ch")
    rows = {r.method: r for r in method_rows(engine, layer, fmt)}
    assert set(rows) == {"plain", "gptq", "bias_correction", "awq", "clip_search", "smoothquant"}
    xs = [engine._ensure_ref()[layer.inputs[0]][i] for i in engine.data.calibration]
    w = engine.model.weight(layer.weights[0])
    b = engine.model.weight(layer.biases[0])[None, :, None, None].astype(np.float64)

    def direct(wq, bq) -> float:
        ref = [_conv_ort(x, w, pads=[1] * 4).astype(np.float64) + b for x in xs]
        got = [_conv_ort(x, wq, pads=[1] * 4).astype(np.float64) + bq for x in xs]
        signal = sum(np.sum(r**2) for r in ref)
        noise = sum(np.sum((r - g) ** 2) for r, g in zip(ref, got, strict=True))
        return 10 * np.log10(signal / noise)

    plain = fake_quantize(w, parse_format("int3 sym ch0"))
    assert rows["plain"].sqnr_db == pytest.approx(direct(plain, b), abs=1e-3)
    rec = engine.recovery.result(layer, fmt, Recovery.BIAS)
    assert rows["bias_correction"].sqnr_db == pytest.approx(
        direct(rec.weight, rec.bias[None, :, None, None].astype(np.float64)), abs=1e-3
    )
    assert rows["gptq"].sqnr_db > rows["plain"].sqnr_db
    engine.close()


def test_ort_overrides_leave_out_recovered_weights_and_say_why() -> None:
    info = from_proto(builders.conv_net()).info
    plan = Plan(info, {"conv1": LayerChoice.of("int4 sym ch", None, False, "gptq"),
                       "conv2": LayerChoice.of("int4 sym ch")})  # fmt: skip
    ov = plan.to_ort_overrides()
    assert "conv1.w" not in ov and "conv2.w" in ov
    assert any("conv1: weight int4 sym ch with gptq" in m for m in plan.ort_unrepresentable())


def test_evaluation_reports_the_recovered_weight_error() -> None:
    model = from_proto(builders.conv_net())
    engine = Engine(model, Dataset.random(model.info, n=4, seed=1), device="cpu")
    plain = engine.evaluate(Plan(model.info, {"conv2": LayerChoice.of("int3 sym ch")}))
    gptq_plan = Plan(model.info, {"conv2": LayerChoice.of("int3 sym ch", None, False, "gptq")})
    rec = engine.recovery.result(model.info.layer("conv2"), gptq_plan["conv2"].weight, Recovery.GPTQ)
    got = engine.evaluate(gptq_plan).layers["conv2"].weight
    w = engine.model.weight(model.info.layer("conv2").weights[0]).astype(np.float64)
    want = 10 * np.log10(np.sum(w**2) / np.sum((w - rec.weight) ** 2))
    assert got.sqnr_db == pytest.approx(want, abs=1e-6)
    assert got.sqnr_db != plain.layers["conv2"].weight.sqnr_db
    engine.close()


def test_matmul_add_constant_is_the_linear_layers_bias() -> None:
    from tests.core.export_models import transformer_block

    info = from_proto(transformer_block(16, 32)).info
    biases = {la.name: [b.name for b in la.biases] for la in info.layers}
    assert biases["q_proj"] == ["bq"] and biases["ff2"] == ["b2"]
    # MatMul -> Add(x, ·) with a computed other input is no bias
    proto = builders.mlp()
    proto.graph.node[1].input[1] = "x2"
    proto.graph.node.insert(1, helper.make_node("Relu", ["m1"], ["x2"], name="r"))
    proto.graph.node[2].input[:] = ["m1", "x2"]
    layer = from_proto(proto).info.layer("fc1")
    assert layer.biases == ()


def test_a_dropped_engine_is_freed_at_once() -> None:
    """The recovery cache must not tie the engine in a cycle: its sessions hold threads."""
    import gc
    import weakref

    model = from_proto(builders.conv_net())
    engine = Engine(model, Dataset.random(model.info, n=2, seed=0), device="cpu")
    engine.evaluate(Plan(model.info, {"fc": LayerChoice.of("int4 sym ch", None, False, "gptq")}))
    ref = weakref.ref(engine)
    gc.disable()
    try:
        del engine
        assert ref() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("group", [2, 8])  # grouped and depthwise
def test_grouped_conv_methods_work_per_group(group: int) -> None:
    rng = np.random.default_rng(4)
    x = np.abs(rng.standard_normal((2, 8, 9, 9))).astype(np.float32)
    w = builders.weights((8, 8 // group, 3, 3), seed=6)
    geo = geometry("Conv", w.shape, {"group": group, "pads": [1] * 4}, 1)
    st = InputStats.of(geo, [x])
    fmt = parse_format("int3 sym ch0")
    plain = output_error(geo, st, fake_quantize(w, fmt).astype(np.float64) - w).sum()
    for method in (gptq, clip_search, awq):
        rec = method(w, fmt, geo, st)
        np.testing.assert_array_equal(decode(rec).astype(np.float32), rec.weight)
        assert output_error(geo, st, rec.weight.astype(np.float64) - w).sum() <= plain * 1.0001
    b = builders.bias(8, seed=1)
    rec = bias_correction(w, b, fmt, geo, st)
    ref, got = _conv_ort(x, w, group=group, pads=[1] * 4), _conv_ort(x, rec.weight, group=group, pads=[1] * 4)
    shift = (got.astype(np.float64) + rec.bias[None, :, None, None]) - (ref + b[None, :, None, None])
    np.testing.assert_allclose(shift.mean(axis=(0, 2, 3)), 0, atol=1e-5)


def test_statistics_in_pieces_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    from bitlens.core.recovery import problem

    x = np.random.default_rng(0).standard_normal((5, 4, 6, 6)).astype(np.float32)
    geo = geometry("Conv", (8, 4, 3, 3), {"pads": [1] * 4}, 1)
    whole = InputStats.of(geo, [x])
    monkeypatch.setattr(problem, "FEATURE_BYTES", 8 * x[0].size * 9 * 2)  # 2 samples a piece
    parts = InputStats.of(geo, [x])
    np.testing.assert_allclose(parts.hessian, whole.hessian, rtol=1e-12)
    np.testing.assert_allclose(parts.total, whole.total, rtol=1e-12)
    assert parts.count == whole.count == 5 * 36
