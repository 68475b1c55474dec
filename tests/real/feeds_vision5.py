"""Inputs for the fifth set of real vision models (test_real_vision5.py): PP-OCRv5 mobile.

ocrspine ships the models with PaddleOCR's own preprocessing (its PROVENANCE.md names
PaddleOCR's PP-OCRv5 configs, https://github.com/PaddlePaddle/PaddleOCR, configs/det,
configs/rec and PaddleX's PP-LCNet_x1_0_textline_ori); ``n`` samples come back as numbered
feeds ``x/i`` where the model's sizes are dynamic and real inputs differ in size.
"""

from __future__ import annotations

import numpy as np

from tests.real import inputs, vision_feeds

Feeds = dict[str, np.ndarray]
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def ppocrv5_det(n: int) -> Feeds:
    """DBNet detector: BGR, x/255, ImageNet mean and std, NCHW, sides multiples of 32; pages
    of two sizes (its height and width are dynamic; small pages keep the test fast)."""
    feeds = {}
    for i in range(n):
        h, w = (96, 128) if i % 2 else (128, 160)
        feeds[f"x/{i}"] = vision_feeds.rapidocr_det(i + 1, h, w)[i]["x"]
    return feeds


def ppocrv5_rec(n: int) -> Feeds:
    """SVTR-LCNet recognizer: RGB line at height 48, (x/255 - 0.5)/0.5, CHW; widths differ:
    PaddleOCR's recognizer preprocessing, as PP-OCRv4's in test_real_models."""
    from tests.real.test_real_models import _rapidocr_feeds

    return _rapidocr_feeds(n)


def ppocrv5_cls(n: int) -> Feeds:
    """Text-line orientation (0 or 180 degrees): the line resized to 80x160, x/255, ImageNet
    mean and std, NCHW; odd samples are turned upside down."""
    out = []
    for i in range(n):
        line = inputs.text_line_rgb(160, 80, seed=1600 + i)
        if i % 2:
            line = line[::-1, ::-1].copy()
        x = (line.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        out.append(x.transpose(2, 0, 1))
    return {"x": np.stack(out).astype(np.float32)}
