"""Inputs for Silero VAD v6 as faster-whisper ships it and openWakeWord's mel front end,
each after its package's own preprocessing (cited), and the iris rows for ONNX Runtime's
example classifier."""

from __future__ import annotations

import numpy as np

from tests.real import inputs


def silero_v6(n: int, chunks: int = 16) -> dict[str, np.ndarray]:
    # faster_whisper/vad.py, SileroVADModel.__call__: 16 kHz audio cut in windows of 512
    # samples, each after the last 64 samples of the window before (zeros for the first),
    # all windows of a clip in one batch; LSTM state h and c [1, 1, 128] start at zero.
    # One numbered feed per clip: the state's batch of 1 does not follow the windows.
    feeds = {}
    for i in range(n):
        windows = inputs.voiced_audio(512 * chunks, 16000, seed=70 + i).reshape(-1, 512)
        context = windows[:, -64:].copy()
        context[-1] = 0
        feeds[f"input/{i}"] = np.concatenate([np.roll(context, 1, 0), windows], 1)
        feeds[f"h/{i}"] = np.zeros((1, 1, 128), np.float32)
        feeds[f"c/{i}"] = np.zeros((1, 1, 128), np.float32)
    return feeds


def melspectrogram(n: int) -> dict[str, np.ndarray]:
    # openwakeword/utils.py, AudioFeatures._get_melspectrogram: 16 kHz audio as int16
    # values in float32, [batch, samples]; one second per row.
    audio = [inputs.voiced_audio(16000, 16000, seed=20 + i) * 32767.0 for i in range(n)]
    return {"input": np.stack(audio).astype(np.float32)}


def iris(n: int) -> dict[str, np.ndarray]:
    # logreg_iris.onnx's input is fixed at [3, 2]: three flowers' sepal length and width
    # (cm) per feed, near the iris data set's species means.
    rng = np.random.default_rng(0)
    means = np.array([[5.0, 3.4], [5.9, 2.8], [6.6, 3.0]], np.float32)
    return {f"float_input/{i}": means + rng.normal(0, 0.3, (3, 2)).astype(np.float32)
            for i in range(n)}  # fmt: skip
