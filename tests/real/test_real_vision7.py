"""A seventh set of real public models, through the command line with default options.

What the other suites lack: a segmenter (napari-czann-segment's ZEISS nucleus detector,
tf2onnx 1.9 at opset 12, NHWC [N, 1024, 1024, 1], an EfficientNet encoder with SE blocks
and a DepthToSpace decoder, its per-pixel softmax written out as Exp / ReduceSum, packed in
a .czseg zip inside the wheel) and two of Microsoft's speech-quality regressors as
speechmos ships them: DNSMOS's sig_bak_ovr (keras2onnx 1.8, raw 9 s audio, an STFT as two
Convs then a log power) and PLCMOS v2 (PyTorch 1.11, two GRUs and 12 Gemms, a rank-0 score
over a dynamic batch axis). Inputs are made as the packages make them (feeds_vision7.py).
The segmenter's and DNSMOS's evaluations (1024x1024 pixels, 19 GMACs per DNSMOS row: 10 to
30 s of CPU each) and every model's search are in docs/real-models.md, not here.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bitlens.core.output_kind import class_score_axes
from tests.real import feeds_vision7, wheels
from tests.real.test_real_models import Case, model_path, run_cli
from tests.real.test_real_vision2 import check_inspect
from tests.real.test_real_vision4 import _stored, exported_w8a8

CASES = (
    Case("czann-nuclei", wheels.NAPARI_CZANN_SEGMENT, "PGC_20X_nucleus_detector.onnx",
         feeds_vision7.nuclei, {"Conv": 95}),
    Case("dnsmos-sig-bak-ovr", wheels.SPEECHMOS, "sig_bak_ovr.onnx", feeds_vision7.dnsmos,
         {"Conv": 9, "MatMul": 3}),
    Case("plcmos-v2", wheels.SPEECHMOS, "plcmos_v2.onnx", feeds_vision7.plcmos,
         {"Conv": 4, "GRU": 2, "Gemm": 12}, min_sqnr_db=20.0),
)  # fmt: skip
BY_ID = {c.id: c for c in CASES}
NOTES = {
    "czann-nuclei": "7 BatchNormalization(s) folded",
    "dnsmos-sig-bak-ovr": None,
    "plcmos-v2": None,
}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_inspect(c: Case) -> None:
    check_inspect(c, model_path(c.wheel, c.filename), NOTES[c.id])


def test_segmenter_output_is_read_as_classes_per_pixel() -> None:
    """tf2onnx wrote its channels-last softmax as Exp / ReduceSum over axis 1 of the NCHW
    tensor, then moved the classes last: judged by top-1 per pixel over axis 3, as a Softmax
    op would be (tests/core/test_softmax_written_out.py)."""
    c = BY_ID["czann-nuclei"]
    proto = onnx.load(str(model_path(c.wheel, c.filename)), load_external_data=False)
    assert [o.name for o in proto.graph.output] == ["Identity:0"]
    assert class_score_axes(proto, ["Identity:0"]) == {"Identity:0": 3}


def test_rank0_score_runs_each_feed_alone_and_exports(tmp_path) -> None:
    """PLCMOS's score is a scalar over a dynamic batch axis: feeds of one shape joined as a
    batch would mix (one score for two clips), so every feed runs alone and `eval` says so.
    W8A8 keeps the score within the floor; the export passes its check, is bit-exact as
    written, and in plain ONNX Runtime scores each held-out clip as the simulation did
    within a tenth of a MOS point; the user's file is untouched."""
    c = BY_ID["plcmos-v2"]
    path = model_path(c.wheel, c.filename)
    data = tmp_path / "data.npz"
    feeds = c.feeds(4)
    np.savez(data, **feeds)
    before = _stored(path)
    res = run_cli("eval", str(path), "--preset", "W8A8", "--data", str(data), "--json")
    assert res.returncode == 0, res.stderr
    assert "does not keep rows apart along axis 0" in res.stdout + res.stderr
    (score,) = json.loads(res.stdout)["outputs"].values()
    assert score["error"]["sqnr_db"] > c.min_sqnr_db
    out = tmp_path / "w8a8.onnx"
    fid = exported_w8a8(path, data, out)
    assert fid["passed"]
    assert _stored(path) == before
    float_sess, quant_sess = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                              for p in (path, out))  # fmt: skip
    for i in (2, 3):  # the held-out feeds
        feed = {k: feeds[f"{k}/{i}"] for k in ("degraded_audio", "rater_embed")}
        ref, got = (float(s.run(None, feed)[0]) for s in (float_sess, quant_sess))
        assert 1.0 <= ref <= 5.0 and abs(got - ref) < 0.1, (i, ref, got)
    report = json.loads((tmp_path / "w8a8.fidelity.json").read_text())
    assert report["passed"]
