"""Inputs for the seventh set of real models (test_real_vision7.py): a microscopy nucleus
segmenter and two of Microsoft's speech-quality models, each after its package's own
preprocessing (cited by file in the wheel)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tests.real import inputs

Feeds = dict[str, np.ndarray]


def _nuclei(size: int, seed: int) -> np.ndarray:
    """A 20x fluorescence field: bright, blurred elliptical nuclei on a dark, noisy
    background, uint8 [size, size]."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(60, 120) * (size / 1024) ** 2) + 4):
        x, y = rng.integers(0, size, 2)
        a, b = rng.integers(8, 22, 2)
        draw.ellipse([int(x - a), int(y - b), int(x + a), int(y + b)],
                     fill=int(rng.integers(90, 230)))  # fmt: skip
    img = img.filter(ImageFilter.GaussianBlur(2.0))
    arr = np.asarray(img, np.float32) + 12 + rng.normal(0, 5, (size, size))
    return np.clip(arr, 0, 255).astype(np.uint8)


def nuclei(n: int) -> Feeds:
    # napari_czann_segment/predict.py, predict_tiles2d: 1024x1024 tiles of one channel,
    # x / the dtype's maximum (do_rescale, the model's ScaleInputsByBitdepth), [N, H, W, 1].
    tiles = [_nuclei(1024, seed=300 + i)[..., None].astype(np.float32) / 255 for i in range(n)]
    return {"input:0": np.stack(tiles)}


def dnsmos(n: int) -> Feeds:
    # speechmos/dnsmos.py, DNSMOS.__call__: 16 kHz audio in [-1, 1], cut in windows of
    # INPUT_LENGTH = 9.01 s (144160 samples), one row each, fed raw to sig_bak_ovr.onnx.
    # Speech with room noise of growing level, what the model scores.
    rows = []
    for i in range(n):
        audio = inputs.voiced_audio(144160, 16000, seed=40 + i).astype(np.float64)
        audio += np.random.default_rng(140 + i).normal(0, 0.02 * (i + 1), audio.shape)
        rows.append(np.clip(audio, -1, 1))
    return {"input_1": np.stack(rows).astype(np.float32)}


def _plc_features(audio: np.ndarray) -> np.ndarray:
    """speechmos/plcmos.py, PLCMOS.stft_transform: frames of 512 with hop 256 (stana with
    synth=True: 256 zeros before), a periodic Hamming window, |rfft|, its natural-log power
    (logpow_dns: zero power floored 120 dB below the smallest nonzero one), over 20."""
    window = np.hamming(513)[:-1]
    hop, size = 256, 512
    frames = int(np.ceil((len(audio) + hop) / hop))
    padded = np.zeros((frames - 1) * hop + size)
    padded[hop : hop + len(audio)] = audio
    framed = np.lib.stride_tricks.sliding_window_view(padded, size)[::hop][:frames] * window
    power = np.abs(np.fft.rfft(framed, size)) ** 2
    floor = np.log(power[power > 0].min()) - 120 / 10 / np.log10(np.e)
    logp = np.where(power > 0, np.log(np.where(power > 0, power, 1.0)), floor)
    return (logp / 20).astype(np.float32)


def plcmos(n: int, seconds: tuple[int, ...] = (3,)) -> Feeds:
    # speechmos/plcmos.py, PLCMOS.get_mos: the degraded clip's features [1, 1, frames, 257]
    # and a rater embedding N(0, 1) [1, 64], one run each. The clip: speech whose 20 ms
    # packets are lost (zeroed) one time in ten, what packet-loss concealment leaves.
    feeds = {}
    for i in range(n):
        audio = inputs.voiced_audio(16000 * seconds[i % len(seconds)], 16000, seed=60 + i)
        audio = audio.astype(np.float64)
        rng = np.random.default_rng(160 + i)
        packets = len(audio) // 320
        for k in rng.choice(packets, size=packets // 10, replace=False):
            audio[k * 320 : (k + 1) * 320] = 0
        feeds[f"degraded_audio/{i}"] = _plc_features(audio)[None, None]
        feeds[f"rater_embed/{i}"] = rng.normal(size=(1, 64)).astype(np.float32)
    return feeds
