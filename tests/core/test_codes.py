"""The codes view's numbers (core/codes.py) against ONNX Runtime's QuantizeLinear /
DequantizeLinear run on the same scale and zero point, and against float64 numpy."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.codes import code_slice, summary
from bitlens.core.errors import FormatError
from bitlens.core.formats import fake_quantize, parse_format


def _ort_qdq(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, axis: int):
    """x -> QuantizeLinear(scale, zp, axis) -> q -> DequantizeLinear -> x̂ (int8, opset 13)."""
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=axis),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("q", TensorProto.INT8, list(x.shape)),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))],
        [numpy_helper.from_array(scale.astype(np.float32), "s"),
         numpy_helper.from_array(zp.astype(np.int8), "z")],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 9
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def test_int8_per_channel_codes_equal_ort_quantizelinear() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.2, (4, 3, 3, 3)).astype(np.float32)
    fmt = parse_format("int8 sym ch").with_axis(0)
    s = code_slice(w, fmt, start=20, count=30, name="W")
    assert s.start == 20 and s.stop == 50 and s.total == w.size
    scale = np.array([next(r.scale for r in s.rows if r.index[0] == c) for c in (0, 1)])
    # the rows span channels 0 and 1: rebuild both channels' parameters from the slice
    assert len({r.group for r in s.rows}) == 2
    full_scale = np.ones(4, np.float32)
    full_zp = np.zeros(4, np.int8)
    full_scale[:2] = scale
    q, y = _ort_qdq(w, full_scale, full_zp, axis=0)
    for r in s.rows:
        assert r.zero_point == 0.0
        assert r.code == float(q[r.index]), r.index
        assert r.dequantized == pytest.approx(float(y[r.index]), abs=0)
        assert r.value == float(w[r.index])
        assert r.error == pytest.approx(float(y[r.index]) - float(w[r.index]))
    assert "x̂ = scale · (q − zero point)" in s.formula
    assert "elements 20–49 of 108" in summary(s)


def test_uint4_asymmetric_per_tensor_by_hand() -> None:
    x = np.linspace(-1.0, 2.0, 16, dtype=np.float32)
    s = code_slice(x, parse_format("uint4 asym"), count=16, name="x")
    (scale,) = {r.scale for r in s.rows}
    (zp,) = {r.zero_point for r in s.rows}
    for r in s.rows:  # float64 reference of the affine form, rounding half to even
        q = np.clip(np.round(np.float64(r.value) / scale) + zp, 0, 15)
        assert r.code == q
        assert r.dequantized == pytest.approx(scale * (q - zp), rel=1e-6)
        assert r.group == "tensor"


def test_lookup_and_cast_formats_show_levels_or_casts() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 64)).astype(np.float32)
    nf4 = code_slice(w, parse_format("nf4 blk32").with_axis(1), count=8, name="w")
    for r in nf4.rows:
        assert r.level is not None and r.dequantized == pytest.approx(r.scale * r.level, rel=1e-6)
        assert r.group.startswith("block 0")
    fp16 = code_slice(w, parse_format("fp16"), count=4, name="w")
    for r in fp16.rows:
        assert r.scale is None and r.code == float(np.float16(r.value)) == r.dequantized


def test_bad_requests_are_format_errors() -> None:
    with pytest.raises(FormatError, match="outside its 4 elements"):
        code_slice(np.ones(4, np.float32), parse_format("int8 sym"), start=9)
    with pytest.raises(FormatError, match="empty"):
        code_slice(np.ones(0, np.float32), parse_format("int8 sym"))


@pytest.mark.parametrize("name", ["mxfp4 blk32", "mxfp8_e4m3 blk32", "nvfp4 blk16"])
def test_scaled_element_formats_rebuild_as_scale_times_code(name: str) -> None:
    """MX and NVFP4 store cast elements q: x̂ = scale · q, with NVFP4's scale column the block
    scale times the tensor scale (the product the decode uses)."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 64)).astype(np.float32)
    s = code_slice(w, parse_format(name).with_axis(1), count=64, name="w")
    want = fake_quantize(w, parse_format(name).with_axis(1)).ravel()[:64]
    for r, x in zip(s.rows, want, strict=True):
        assert r.dequantized == float(x)
        assert r.dequantized == pytest.approx(np.float32(r.scale) * np.float32(r.code), rel=1e-6)
    assert "x̂ = X · q" in s.formula or "x̂ = scale · q" in s.formula


@pytest.mark.parametrize("method", ["gptq", "awq", "smoothquant"])
def test_codes_of_a_recovered_layer_are_the_exported_ones(method: str) -> None:
    """The Codes tab shows what the plan stores (the QuantizedModel's codes), not plain
    rounding; for AWQ/SmoothQuant x̂ is the weight as the layer's input sees it."""
    from bitlens.core.codes import planned_code_slice
    from bitlens.core.data import Dataset
    from bitlens.core.engine import Engine
    from bitlens.core.model.loader import from_proto
    from bitlens.core.plan import LayerChoice, Plan
    from bitlens.core.quantized import quantize_model
    from tests import builders

    model = from_proto(builders.outlier_mlp())
    engine = Engine(model, Dataset(tuple(builders.outlier_feeds()), source="t"), device="cpu")
    plan = Plan(model.info, {"fc1": LayerChoice.of("int3 sym ch", None, False, method)})
    layer = model.info.layer("fc1")
    n = layer.weights[0].numel
    s = planned_code_slice(engine, plan, layer, count=n)
    stored = quantize_model(engine, plan).weight("W1").q
    np.testing.assert_array_equal([r.code for r in s.rows], stored.codes.reshape(-1))
    plain = code_slice(model.weight(layer.weights[0]), stored.fmt, count=n)
    assert [r.code for r in s.rows] != [r.code for r in plain.rows]
    rec = engine.recovery.result(layer, plan["fc1"].weight, plan["fc1"].recovery)
    np.testing.assert_array_equal([r.dequantized for r in s.rows], rec.seen_weight.reshape(-1))
    assert [r.value for r in s.rows] == [r.value for r in plain.rows]  # the float weight
    assert method in s.formula
    engine.close()
