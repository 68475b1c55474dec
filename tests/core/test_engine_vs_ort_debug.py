"""int8 agrees with onnxruntime.quantization.qdq_loss_debug on the same quantization.

ORT's ``quantize_static`` (QDQ, per-channel, MinMax) quantizes weights as
symmetric narrow-range int8 per channel and activations as affine uint8;
Bitlens's "int8 sym narrow ch" / "uint8 asym" with min-max calibration on
the same calibration samples must give the same weights, the same
activation scale and zero point, and the same error figures that ORT's
own debugging helpers compute.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    qdq_loss_debug,
    quantize_static,
)

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.engine.quantizers import numpy_reference, param_feeds
from bitlens.core.formats import parse_format
from bitlens.core.metrics import sqnr_db
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.engine_models import small_cnn


class _Reader(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self):  # type: ignore[override]
        return next(self._it, None)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ortdbg")
    proto = small_cnn()
    model = from_proto(proto)
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)} for _ in range(8)]
    data = Dataset(tuple(feeds), None, (0, 1, 2, 3), (4, 5, 6, 7), "test")
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    fpath, qpath = tmp / "float.onnx", tmp / "qdq.onnx"
    onnx.save(proto, fpath)
    quantize_static(
        str(fpath),
        str(qpath),
        _Reader(feeds[:4]),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv", "Gemm"],
    )
    return engine, feeds, fpath, qpath


def test_weights_and_their_sqnr_match_ort(setup) -> None:
    engine, _, fpath, qpath = setup
    matching = qdq_loss_debug.create_weight_matching(str(fpath), str(qpath))
    ort_err = qdq_loss_debug.compute_weight_error(matching)
    ev = engine.evaluate(Plan.uniform(engine.info, "int8 sym narrow ch"))
    for layer in engine.info.layers:
        w = layer.weights[0]
        ours = engine.quantized_weight(w, parse_format("int8 sym narrow ch"))
        np.testing.assert_array_equal(ours, matching[w.name]["dequantized"])
        assert ev.layers[layer.name].weight.sqnr_db == pytest.approx(ort_err[w.name], abs=1e-6)


def test_activation_parameters_and_qdq_error_match_ort(setup) -> None:
    engine, feeds, fpath, qpath = setup
    q = onnx.load(str(qpath))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in q.graph.initializer}
    fmt = parse_format("uint8 asym")
    lo, hi = engine.activation_range("x", fmt)
    ours = param_feeds("int", "p", fmt, lo, hi)
    assert ours["p__scale"] == pytest.approx(float(inits["x_scale"]), rel=1e-7)
    assert int(ours["p__zp"]) == int(inits["x_zero_point"])

    collected = []
    for path in (qpath, fpath):
        aug = path.with_name(path.stem + "_aug.onnx")
        qdq_loss_debug.modify_model_output_intermediate_tensors(str(path), str(aug))
        collected.append(qdq_loss_debug.collect_activations(str(aug), _Reader(feeds[4:])))
    matching = qdq_loss_debug.create_activation_matching(*collected)
    ort_qdq_err = qdq_loss_debug.compute_activation_error(matching)["x"]["qdq_err"]
    x = np.concatenate([f["x"] for f in feeds[4:]])
    ours_err = sqnr_db(x, numpy_reference("int", x, ours, "p"))
    assert ours_err == pytest.approx(ort_qdq_err, abs=1e-4)
