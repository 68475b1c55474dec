"""Plans as ONNX Runtime TensorQuantOverrides reproduce Bitlens's numbers in ONNX Runtime's own
quantizer (onnxruntime.quantization), bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.quant_utils import quantize_data, quantize_nparray

from bitlens.cli import main
from bitlens.core.formats import Family, Format, parse_format, quantize
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import ORT_EXACT, LayerChoice, Plan

_QTYPE = {"QInt8": TensorProto.INT8, "QUInt8": TensorProto.UINT8, "QInt16": TensorProto.INT16,
          "QUInt16": TensorProto.UINT16, "QInt4": TensorProto.INT4, "QUInt4": TensorProto.UINT4}  # fmt: skip


def _weights(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.3, 600).astype(np.float32)
    return [w, w + np.float32(0.2), np.abs(w)]  # centred, shifted, one-signed


@pytest.mark.parametrize(("key", "rule"), list(ORT_EXACT.items()))
def test_exact_rules_match_ort_quantize_data(key, rule) -> None:
    bits, signed, sym, narrow = key
    fmt = Format(Family.INT, bits, signed=signed, symmetric=sym, narrow=narrow)
    for w in _weights(bits):
        zp, scale, codes = quantize_data(w, _QTYPE[rule[0]], rule[1])
        q = quantize(w, fmt)
        assert np.float32(scale) == np.float32(np.asarray(q.scale).ravel()[0])
        assert int(zp) == int(np.asarray(q.zero_point).ravel()[0])
        assert np.array_equal(np.asarray(codes).astype(np.int64), q.codes.astype(np.int64))


def test_int8_sym_is_not_ort_symmetric_int8_but_maps_exactly_with_its_parameters() -> None:
    """Bitlens int8 sym: -128..127, scale 2 max|w| / 255; ONNX Runtime symmetric int8:
    -127..127, scale max|w| / 127 (Bitlens int8 sym narrow)."""
    w = _weights(0)[0]
    _, ort_scale, _ = quantize_data(w, TensorProto.INT8, True)
    q = quantize(w, Format(Family.INT, 8))
    assert np.float32(ort_scale) != np.float32(np.asarray(q.scale).ravel()[0])
    assert int(q.codes.min()) == -128  # the code ONNX Runtime's symmetric range never uses
    info = from_proto(_matmul_model(w.reshape(24, 25)[:, :24].copy())).info
    plan = Plan(info, {"mm": LayerChoice.of("int8 sym ch")})
    assert plan.to_ort_overrides() == {}
    assert "int8 sym narrow ch" in plan.ort_unrepresentable()[0]
    ov = plan.to_ort_overrides(weights=lambda name: w.reshape(24, 25)[:, :24].copy())
    (entries,) = ov.values()
    assert entries[0]["quant_type"] == "QInt8" and entries[0]["axis"] == 1
    assert plan.ort_unrepresentable(with_weights=True) == []
    values = w.reshape(24, 25)[:, :24]
    for c, e in enumerate(entries):  # ONNX Runtime's own quantizer on the given parameters
        got = quantize_nparray(
            TensorProto.INT8, values[:, c], np.float32(e["scale"]), np.int8(e["zero_point"])
        )
        want = quantize(values[:, c], Format(Family.INT, 8)).codes
        assert np.array_equal(np.asarray(got, np.int64), want.astype(np.int64))


def _matmul_model(w: np.ndarray) -> onnx.ModelProto:
    """x[N,24] -> MatMul(W[24,24], name mm) -> y"""
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 24])],
        [numpy_helper.from_array(w, "W")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _for_python(ov: dict) -> dict:
    """JSON overrides as onnxruntime.quantization's Python API takes them: QuantType members,
    scales and zero points as numpy scalars of the stored types."""
    out = {}
    for tensor, entries in ov.items():
        qt = QuantType[entries[0]["quant_type"]]
        zp_type = {QuantType.QInt8: np.int8, QuantType.QUInt8: np.uint8,
                   QuantType.QInt16: np.int16, QuantType.QUInt16: np.uint16}.get(qt, np.int8)  # fmt: skip
        fixed = []
        for e in entries:
            e = dict(e)
            if "quant_type" in e:
                e["quant_type"] = qt
            if "scale" in e:
                e["scale"] = np.array(e["scale"], np.float32)
                e["zero_point"] = np.array(e["zero_point"], zp_type)
            fixed.append(e)
        out[tensor] = fixed
    return out


class _Reader(CalibrationDataReader):
    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.feeds = iter([{"x": rng.normal(0, 1, (2, 24)).astype(np.float32)} for _ in range(2)])

    def get_next(self):
        return next(self.feeds, None)


@pytest.mark.parametrize("fmt", ["int8 sym narrow ch", "int8 sym ch", "int4 sym ch"])
def test_quantize_static_with_the_overrides_stores_bitlens_codes(tmp_path: Path, fmt: str) -> None:
    w = np.random.default_rng(3).normal(0, 0.2, (24, 24)).astype(np.float32)
    src, out = tmp_path / "m.onnx", tmp_path / "q.onnx"
    onnx.save(_matmul_model(w), str(src))
    info = from_proto(_matmul_model(w)).info
    plan = Plan(info, {"mm": LayerChoice.of(fmt)})
    ov = _for_python(json.loads(json.dumps(plan.to_ort_overrides(weights=lambda name: w))))
    quantize_static(
        str(src), str(out), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
        extra_options={"TensorQuantOverrides": ov},
    )  # fmt: skip
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    codes = next(v for k, v in inits.items() if k.startswith("W") and "quantized" in k)
    scale = next(v for k, v in inits.items() if k.startswith("W") and k.endswith("scale"))
    from bitlens.core.engine import bind

    q = quantize(w, bind(parse_format(fmt), info.layer("mm").weights[0]))
    assert np.array_equal(codes.astype(np.int64), q.codes.astype(np.int64))
    assert np.array_equal(scale.astype(np.float32).ravel(), np.asarray(q.scale, np.float32).ravel())


def test_plan_and_eval_accept_ort_overrides(tmp_path: Path, capsys) -> None:
    w = np.random.default_rng(3).normal(0, 0.2, (24, 24)).astype(np.float32)
    src = tmp_path / "m.onnx"
    onnx.save(_matmul_model(w), str(src))
    ov = {"W": [{"quant_type": "QInt8", "symmetric": True, "axis": 1}]}
    path = tmp_path / "ov.json"
    path.write_text(json.dumps(ov))
    assert main(["eval", str(src), "--plan", str(path), "--samples", "2", "--dim", "N=2"]) == 0
    assert "int8 sym narrow ch1" in capsys.readouterr().out
    out = tmp_path / "plan.json"
    assert main(["plan", str(src), "--from-ort", str(path), "-o", str(out)]) == 0
    plan = json.loads(out.read_text())
    assert plan["layers"]["mm"]["weight"] == "int8 sym narrow ch1"
