"""Inputs for the fourth set of real vision models (test_real_vision4.py).

Each follows its package's own preprocessing (cited by file); ``n`` samples come back as
npz-style arrays, samples along axis 0.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tests.real import inputs

Feeds = dict[str, np.ndarray]


def _letterbox(img: np.ndarray, size: int, fill: int) -> np.ndarray:
    """Scaled to fit ``size`` x ``size`` keeping its aspect, the rest filled with ``fill``."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nh, nw = int(h * r), int(w * r)
    out = np.full((size, size, 3), fill, np.uint8)
    out[:nh, :nw] = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    return out


def _captcha(seed: int) -> np.ndarray:
    """A click captcha: a scene of 344x384 with a few large glyphs drawn on it (RGB)."""
    img = inputs.scene(384, seed=seed)[:344]
    rng = np.random.default_rng(seed + 7)
    for _ in range(4):
        glyph = inputs.text_line_rgb(48, 48, seed=int(rng.integers(0, 10_000)))
        y, x = rng.integers(20, 344 - 60), rng.integers(20, 384 - 60)
        img[y : y + 48, x : x + 48] = np.minimum(img[y : y + 48, x : x + 48], glyph)
    return img


def capspot_det(n: int) -> Feeds:
    """CapSpot/image_matcher.py, DetectModel: the BGR image (cv2.imdecode) letterboxed to
    416x416 over grey 114, raw 0..255, NCHW (YOLOX's preproc, no mean and no scaling)."""
    imgs = [_letterbox(_captcha(1000 + i), 416, 114)[..., ::-1] for i in range(n)]
    return {"images": np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32)}


def capspot_sim(n: int) -> Feeds:
    """CapSpot/image_matcher.py, ONNXModel: two RGB crops (a glyph cut from the captcha and
    the glyph to click) letterboxed to 60x60 over grey 128, x/255, NHWC; a sample is a
    pair, the same glyph for even samples and two different ones for odd."""
    a, b = [], []
    for i in range(n):
        first = inputs.text_line_rgb(52, 56, seed=1100 + i)
        second = inputs.text_line_rgb(52, 56, seed=1100 + i + (i % 2) * 50)
        a.append(_letterbox(first, 60, 128))
        b.append(_letterbox(second[::-1, ::-1].copy() if i % 2 else second, 60, 128))
    return {"input_1": np.stack(a).astype(np.float32) / 255.0,
            "input_2": np.stack(b).astype(np.float32) / 255.0}  # fmt: skip


def table_cls(n: int) -> Feeds:
    """rapid_table_det/predictor.py, PPLCNet: the page resized and padded to 624x624
    (ResizePad), x/255 with no mean, NCHW. A page with a ruled table on it."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(1200 + i)
        page = np.full((624, 624, 3), 245, np.uint8)
        top, left = int(rng.integers(60, 160)), int(rng.integers(40, 120))
        rows, cols = int(rng.integers(4, 9)), int(rng.integers(3, 6))
        rh, cw = 40, int(rng.integers(80, 120))
        for r in range(rows + 1):
            page[top + r * rh : top + r * rh + 2, left : left + cols * cw] = 30
        for c in range(cols + 1):
            page[top : top + rows * rh, left + c * cw : left + c * cw + 2] = 30
        for r in range(rows):
            for c in range(cols):
                cell = inputs.text_line_rgb(cw - 12, rh - 12, seed=1300 + 50 * i + 7 * r + c)
                y, x = top + r * rh + 6, left + c * cw + 6
                page[y : y + rh - 12, x : x + cw - 12] = cell
        if i % 2:
            page = np.rot90(page).copy()  # the classifier tells the table's orientation
        out.append(page.transpose(2, 0, 1).astype(np.float32) / 255.0)
    return {"input": np.stack(out)}
