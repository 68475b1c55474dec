"""Inputs for the vision models the search is compared with W8A8 on, one dict per sample.

Each follows its package's own preprocessing (cited); sizes are parameters where the
model's height and width are dynamic, so the tests can run small images.
"""

from __future__ import annotations

import numpy as np

from tests.real import inputs, more_feeds

Feeds = dict[str, np.ndarray]


def batch1(feeds: Feeds, n: int) -> list[Feeds]:
    return [{k: v[i : i + 1] for k, v in feeds.items()} for i in range(n)]


def nsfw(n: int) -> list[Feeds]:
    # open_nsfw's Caffe preprocessing: BGR, minus the channel means; NHWC, 224x224.
    out = []
    for i in range(n):
        img = inputs.scene(224, seed=i)[..., ::-1].astype(np.float32)
        out.append({"input_0": (img - np.array([104.0, 117.0, 123.0], np.float32))[None]})
    return out


def nudenet(n: int, size: int = 160) -> list[Feeds]:
    return batch1(more_feeds.nudenet(n, size), n)  # x/255, NCHW; height and width dynamic


def ddddocr_det(n: int) -> list[Feeds]:
    # ddddocr's detector (ddddocr/__init__.py, detection): RGB 416x416, x/255, NCHW.
    return [
        {"images": (inputs.scene(416, seed=200 + i).transpose(2, 0, 1)[None] / 255.0)
         .astype(np.float32)}
        for i in range(n)
    ]  # fmt: skip


def page(height: int, width: int, seed: int) -> np.ndarray:
    """A document crop: text lines on a light page, uint8 RGB ``[height, width, 3]``."""
    rng = np.random.default_rng(seed)
    out = np.full((height, width, 3), int(rng.integers(200, 245)), np.uint8)
    y = int(rng.integers(4, 12))
    while y + 32 <= height:
        w = int(rng.integers(width // 2, width - 8))
        line = inputs.text_line_rgb(w, 28, seed=seed * 31 + y)
        x = int(rng.integers(2, width - w))
        out[y : y + 28, x : x + w] = line
        y += 28 + int(rng.integers(4, 16))
    return out


def rapidocr_det(n: int, height: int = 128, width: int = 160) -> list[Feeds]:
    # rapidocr's text detector (ch_ppocr_det, DBNet): BGR, x/255, ImageNet mean/std, NCHW,
    # sides multiples of 32 (the model's sizes are dynamic: small pages keep it fast).
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    out = []
    for i in range(n):
        img = page(height, width, seed=500 + i)[..., ::-1].astype(np.float32) / 255.0
        out.append({"x": ((img - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)})
    return out


def rapidocr_cls(n: int, width: int = 192) -> list[Feeds]:
    # rapidocr's direction classifier: RGB text line resized to 48x192, (x/255 - 0.5)/0.5
    # (its width is dynamic in the model).
    return [
        {"x": ((inputs.text_line_rgb(width, 48, seed=300 + i) / 255.0 - 0.5) / 0.5)
         .transpose(2, 0, 1)[None].astype(np.float32)}
        for i in range(n)
    ]  # fmt: skip
