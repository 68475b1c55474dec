"""W8A8's weights are ONNX Runtime's (and TensorRT's) int8 grid: -127..127 per channel.

The -128..127 grid (scale 2*max/255) put each channel's largest weight half a step off,
and was measured worse than ONNX Runtime's quantize_static on benchmarks/bench_export.py's
CRNN (28.0 vs 28.2 dB).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.builders import conv_net
from tests.core.test_export_models import run


class _Reader(CalibrationDataReader):
    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _weights(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each Conv/Gemm's weight codes and scales, keyed by the layer's node name."""
    m = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    dq = {n.output[0]: n for n in m.graph.node if n.op_type == "DequantizeLinear"}
    out = {}
    for n in m.graph.node:
        if n.op_type in ("Conv", "Gemm") and n.input[1] in dq:
            d = dq[n.input[1]]
            if d.input[0] in inits:
                out[n.name] = (inits[d.input[0]], inits[d.input[1]])
    return out


def test_w8a8_weights_equal_ort_quantize_static(tmp_path: Path) -> None:
    proto = conv_net()
    src = tmp_path / "conv.onnx"
    onnx.save(proto, str(src))
    model = from_proto(proto, src)
    data = Dataset.random(model.info, 8, {}, seed=0)
    engine = Engine(model, data, device="cpu")
    drain(engine.calibrate("minmax"))
    result, report = run(engine, Plan.preset(engine.info, "W8A8"), tmp_path / "bitlens.onnx")
    assert report.passed, report.failures
    ort_path = tmp_path / "ort.onnx"
    quantize_static(
        str(src), str(ort_path), _Reader([data.samples[i] for i in data.calibration]),
        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip
    ours, theirs = _weights(result.path), _weights(ort_path)
    assert set(ours) == {"conv1", "conv2", "fc"} and set(theirs) == set(ours)
    for name, (codes, scale) in ours.items():
        np.testing.assert_array_equal(codes, theirs[name][0])  # the same codes, bit for bit
        np.testing.assert_array_equal(scale, theirs[name][1])
        assert codes.min() >= -127
        # each channel's largest weight is exactly on the grid: +-127 codes
        assert np.all(np.abs(codes.reshape(codes.shape[0], -1)).max(axis=1) == 127)
