"""Image sample: a small CNN on scikit-learn's bundled 8x8 handwritten digits.

Rebuild: /path/to/venv-with-torch/bin/python resources/scripts/make_digits_cnn.py
(needs torch, scikit-learn, onnx, onnxruntime; see resources/README.md).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from sample_common import seed_everything, train, write_sample
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def main() -> None:
    started = time.time()
    seed_everything(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # [N, 1, 8, 8] in [0, 1]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    model = DigitsCNN()
    train(model, x_tr, y_tr, epochs=40)
    write_sample(
        "digits_cnn",
        model,
        x_te,
        y_te,
        "image",
        {
            "title": "Handwritten digits CNN",
            "domain": "image",
            "description": "Conv-ReLU x3, max-pool and two fully connected layers, trained on "
            "scikit-learn's 8x8 digits (1437 train / 360 held out).",
            "classes": [str(i) for i in range(10)],
            "layout": "NCHW",
            "preprocessing": "grey level / 16, so pixels lie in [0, 1]; 1x8x8",
            "seed": 0,
        },
        started,
    )


if __name__ == "__main__":
    main()
