"""Build the ``digits_cnn`` sample: a small CNN on scikit-learn's bundled 8x8 digits.

Run from the repository root with the build-time venv (torch, onnx, onnxruntime,
scikit-learn)::

    /work/torchvenv/bin/python resources/scripts/make_digits_cnn.py

Writes ``resources/samples/digits_cnn/{model.onnx,data.npz,meta.json}``.
The data set ships inside scikit-learn; nothing is downloaded.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, seed_everything

SEED = 0
N_TEST = 360
EPOCHS = 40
SIZE = 16  # the 8x8 images are upsampled 2x so three conv stages have room


def upsample2x(images: np.ndarray) -> np.ndarray:
    """Bilinear 2x upsampling with half-pixel centres and edge clamping.

    Equivalent to ``torch.nn.functional.interpolate(scale_factor=2, mode="bilinear",
    align_corners=False)``, written in numpy so users can reproduce it without torch.
    """
    n = images.shape[-1]
    src = np.clip((np.arange(2 * n) + 0.5) / 2 - 0.5, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    w = (src - lo).astype(np.float32)
    rows = images[..., lo, :] * (1 - w)[:, None] + images[..., hi, :] * w[:, None]
    return rows[..., lo] * (1 - w) + rows[..., hi] * w


def preprocess(pixels: np.ndarray) -> np.ndarray:
    """sklearn digits pixels (0..16, shape [N, 64]) -> float32 NCHW [N, 1, 16, 16] in 0..1."""
    x = pixels.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0
    return upsample2x(x).astype(np.float32)


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv1(x))  # 16x16
        x = self.pool(self.relu(self.conv2(x)))  # 8x8
        x = self.pool(self.relu(self.conv3(x)))  # 4x4
        x = torch.flatten(x, 1)
        x = self.relu(self.fc1(x))
        return self.fc2(x)


def random_shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to 2 pixels (zero fill): cheap augmentation against overfitting."""
    out = torch.zeros_like(x)
    shifts = torch.randint(-2, 3, (x.shape[0], 2), generator=gen)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        ys, yd = (slice(0, SIZE - dy), slice(dy, SIZE)) if dy >= 0 else (
            slice(-dy, SIZE), slice(0, SIZE + dy))
        xs, xd = (slice(0, SIZE - dx), slice(dx, SIZE)) if dx >= 0 else (
            slice(-dx, SIZE), slice(0, SIZE + dx))
        out[i, :, yd, xd] = x[i, :, ys, xs]
    return out


def main() -> None:
    seed_everything(SEED)
    t0 = time.perf_counter()
    digits = load_digits()
    x = preprocess(digits.data)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=N_TEST, random_state=SEED, stratify=y)

    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    gen = torch.Generator().manual_seed(SEED)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for k in range(0, len(xt), 64):
            idx = perm[k:k + 64]
            loss = nn.functional.cross_entropy(model(random_shift(xt[idx], gen)), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}", file=sys.stderr)
    train_s = time.perf_counter() - t0
    model.eval()

    meta = {
        "title": "Handwritten digits (CNN)",
        "domain": "image",
        "description": (
            "A small convolutional network (3 Conv+Relu, 2 MaxPool, 2 Gemm) classifying "
            "scikit-learn's bundled 8x8 handwritten digits (UCI optical digits), upsampled "
            "to 16x16. The evaluation set is a stratified held-out split never seen in training."
        ),
        "class_names": [str(d) for d in range(10)],
        "input": {
            "layout": "NCHW",
            "preprocessing": (
                "sklearn.datasets.load_digits() pixels (0..16) divided by 16, reshaped to "
                "[N, 1, 8, 8], then bilinear 2x upsampling to 16x16 (half-pixel centres, "
                "edge clamp; = torch interpolate bilinear, align_corners=False)"
            ),
        },
        "made_by": {
            "script": "resources/scripts/make_digits_cnn.py",
            "seed": SEED,
            "data": (f"sklearn load_digits, train_test_split(test_size={N_TEST}, "
                     f"random_state={SEED}, stratify=labels)"),
            "training": (f"Adam lr 2e-3, weight decay 1e-4, cosine schedule, {EPOCHS} epochs, "
                         "batch 64, random shifts of up to 2 px"),
            "train_samples": len(y_tr),
            "train_seconds": round(train_s, 1),
        },
    }
    finish("digits_cnn", model, "image", x_te, y_te, meta)


if __name__ == "__main__":
    main()
