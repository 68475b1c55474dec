"""Inputs for the detector, byte-level, seq2seq and audio-embedding models of the real suite.

Each follows its package's own preprocessing (cited), so the models see what
they were trained on: a scene for the YOLOv8 detector, the first and last
bytes of text files for Magika, name-like token sequences (and the encoder's
own outputs) for the romanizer's decoder, log-mel frames of a voiced sound
for openWakeWord's speech embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tests.real import inputs


def nudenet(n: int, size: int = 160) -> dict[str, np.ndarray]:
    # nudenet/nudenet.py: RGB, x/255, NCHW; the model's height and width are dynamic, so a
    # small square keeps the suite fast (the package pads to 320).
    imgs = np.stack([inputs.scene(size, seed=20 + i) for i in range(n)]).astype(np.float32)
    return {"images": imgs.transpose(0, 3, 1, 2) / 255.0}


_TEXTS = (
    lambda rng: "\n".join(
        f"def f{i}(x):\n    return x * {int(rng.integers(1, 99))} + {i}" for i in range(60)
    ),
    lambda rng: json.dumps({f"key{i}": [float(v) for v in rng.normal(size=3)] for i in range(40)}),
    lambda rng: "\n".join(
        ",".join(str(int(v)) for v in rng.integers(0, 1000, 6)) for _ in range(90)
    ),
    lambda rng: "<html><body>" + "".join(f"<p id='p{i}'>item {i}</p>" for i in range(80)),
)


def magika(n: int) -> dict[str, np.ndarray]:
    # magika/magika.py with models/standard_v3_3/config.min.json: the first 1024 and the last
    # 1024 bytes (after stripping whitespace), padded with token 256.
    rows = np.full((n, 2048), 256, np.int32)
    for i in range(n):
        data = _TEXTS[i % len(_TEXTS)](np.random.default_rng(i)).encode().strip()
        beg, end = data[:1024], data[-1024:]
        rows[i, : len(beg)] = np.frombuffer(beg, np.uint8)
        rows[i, 2048 - len(end) :] = np.frombuffer(end, np.uint8)
    return {"bytes": rows}


def _tokens(n: int, length: int, vocab: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Name-like token ids (4.. are characters, 0 padding) and their mask, lengths varying."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((n, length), np.int64)
    mask = np.zeros((n, length), bool)
    for i in range(n):
        k = int(rng.integers(length // 2, length + 1))
        ids[i, :k] = rng.integers(4, vocab, k)
        mask[i, :k] = True
    return ids, mask


def romanizer_encoder(n: int) -> dict[str, np.ndarray]:
    src, mask = _tokens(n, 12, 160, seed=5)
    return {"src": src, "src_mask": mask}


def romanizer_decoder(encoder: Path, n: int) -> dict[str, np.ndarray]:
    # The decoder step reads the encoder's memory and hidden state: run the encoder for them.
    feeds = romanizer_encoder(n)
    memory, mask, hidden = ort.InferenceSession(str(encoder)).run(None, feeds)
    prefix, _ = _tokens(n, 5, 160, seed=6)
    prefix[:, 0] = 1  # the start token
    return {"prefix": prefix, "memory": memory, "src_mask": mask, "hidden": hidden}


def wakeword_embedding(melspectrogram: Path, n: int) -> dict[str, np.ndarray]:
    # openwakeword/utils.py AudioFeatures: int16-scaled audio -> melspectrogram.onnx ->
    # x/10 + 2 -> windows of 76 frames, step 8 -> [n, 76, 32, 1].
    audio = inputs.voiced_audio(16000 + 160 * 8 * n, 16000, seed=7) * 32767.0
    sess = ort.InferenceSession(str(melspectrogram))
    spec = np.squeeze(sess.run(None, {"input": audio[None].astype(np.float32)})[0]) / 10 + 2
    windows = np.stack([spec[8 * i : 8 * i + 76] for i in range(n)])
    return {"input_1": windows[..., None].astype(np.float32)}


def captcha(n: int) -> dict[str, np.ndarray]:
    # captcha_whisperer/preprocess.py: RGB resized to 160 x 60, BGR order, CHW, values kept
    # in 0..255 (no mean, no scaling). Captcha-like: dark characters on a light line.
    imgs = [inputs.text_line_rgb(160, 60, seed=50 + i)[..., ::-1] for i in range(n)]
    return {"image": np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32)}
