"""Real-looking inputs made in code, so real models see what they were trained on.

Errors measured on uniform noise mislead (a classifier's logits on noise sit
near its bias, an OCR model reads nothing), so each model gets inputs of its
own kind: rendered text lines for the OCR recognizers, a smooth scene with
objects for the image classifier, a voiced sound with pauses for the
voice-activity model. All are deterministic for a seed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except (TypeError, OSError):
        return ImageFont.load_default()


def text_line(width: int, height: int, seed: int) -> np.ndarray:
    """A grey text line like a captcha or a cropped word: uint8 ``[height, width]``."""
    rng = np.random.default_rng(seed)
    text = "".join(rng.choice(list(_CHARS), size=int(rng.integers(4, 7))))
    bg = int(rng.integers(190, 250))
    img = Image.new("L", (width, height), bg)
    draw = ImageDraw.Draw(img)
    font = _font(int(height * 0.7))
    x = int(rng.integers(2, 10))
    for ch in text:
        y = int(rng.integers(0, max(1, height // 6)))
        draw.text((x, y), ch, fill=int(rng.integers(0, 80)), font=font)
        x += int(draw.textlength(ch, font=font)) + int(rng.integers(0, 4))
    for _ in range(3):  # a few strokes across, as captchas have
        pts = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(2)]
        draw.line(pts, fill=int(rng.integers(60, 160)), width=1)
    img = img.filter(ImageFilter.GaussianBlur(0.6))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 4, (height, width))
    return np.clip(arr, 0, 255).astype(np.uint8)


def text_line_rgb(width: int, height: int, seed: int) -> np.ndarray:
    """A text line on a tinted background: uint8 ``[height, width, 3]``."""
    grey = text_line(width, height, seed).astype(np.float32)
    tint = np.random.default_rng(seed + 1).uniform(0.85, 1.0, 3).astype(np.float32)
    return np.clip(grey[..., None] * tint, 0, 255).astype(np.uint8)


def scene(size: int, seed: int) -> np.ndarray:
    """A natural-ish photo: sky-to-ground gradient, blurred shapes, texture. uint8 ``[H, W, 3]``."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    top, bottom = rng.uniform(60, 230, 3), rng.uniform(20, 160, 3)
    base = top * (1 - yy) + bottom * yy + np.zeros((size, size, 3), np.float32)
    img = Image.fromarray(base.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 9))):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 10, size // 2, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = [int(x0), int(y0), int(x0 + w), int(y0 + h)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 3.0))))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def voiced_audio(n: int, rate: int, seed: int) -> np.ndarray:
    """A vowel-like harmonic sound with a syllable envelope and pauses, plus room noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) / rate
    f0 = rng.uniform(100, 220) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * rng.uniform(2, 4) * t + rng.uniform(0, 6)), 0, None)
    audio = 0.3 * voice * syllables + rng.normal(0, 0.01, n)
    return (audio / max(1.0, np.abs(audio).max())).astype(np.float32)
