"""Speech sample: keyword spotting (8 words + background noise) with an LSTM core.

Speech is synthesized offline with espeak-ng (Debian package ``espeak-ng``)
in several accents, voices, speeds and pitches, mixed with noise at random
SNR, and turned into log-mel spectrograms in numpy:
16 kHz, 1 s clips, 40 ms Hann window, 20 ms hop (50 frames), 40 mel bands,
log(mel + 1e-6), normalized by the training set's mean and std (recorded in meta.json).

Rebuild: /path/to/venv-with-torch/bin/python resources/scripts/make_speech_kws.py
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
from sample_common import seed_everything, train, write_sample
from torch import nn

WORDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]
CLASSES = [*WORDS, "_noise_"]
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbcwmd"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "croak", "klatt"]
RATE, SECONDS, WIN, HOP, MELS = 16000, 1.0, 640, 320, 40
PER_CLASS = 160
N_TEST = 200  # held-out clips shipped in data.npz (kept small: ~1.6 MB)


def synth(word: str, voice: str, speed: int, pitch: int, tmp: Path) -> np.ndarray:
    out = tmp / "w.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(out), word],
        check=True,
        capture_output=True,
    )
    with wave.open(str(out), "rb") as w:
        rate = w.getframerate()
        a = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
    n = round(len(a) * RATE / rate)  # linear resampling is enough for 22.05 -> 16 kHz speech
    return np.interp(np.linspace(0, len(a) - 1, n), np.arange(len(a)), a)


def place(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = int(RATE * SECONDS)
    audio = audio[:n]
    clip = np.zeros(n)
    start = rng.integers(0, n - len(audio) + 1)
    clip[start : start + len(audio)] = audio / (np.abs(audio).max() + 1e-9) * rng.uniform(0.3, 0.9)
    return clip


def noise(rng: np.random.Generator) -> np.ndarray:
    n = int(RATE * SECONDS)
    white = rng.normal(size=n)
    kind = rng.integers(0, 3)
    if kind == 1:  # brown-ish
        white = np.cumsum(white)
        white -= np.convolve(white, np.ones(400) / 400, mode="same")
    elif kind == 2:  # hum
        t = np.arange(n) / RATE
        white = np.sin(2 * np.pi * rng.uniform(50, 300) * t) + 0.3 * white
    return white / (np.abs(white).max() + 1e-9)


def mel_filters() -> np.ndarray:
    def hz_to_mel(f):
        return 2595 * np.log10(1 + f / 700)

    def mel_to_hz(m):
        return 700 * (10 ** (m / 2595) - 1)

    mels = np.linspace(hz_to_mel(20), hz_to_mel(RATE / 2), MELS + 2)
    bins = np.floor((WIN + 1) * mel_to_hz(mels) / RATE).astype(int)
    fb = np.zeros((MELS, WIN // 2 + 1))
    for m in range(1, MELS + 1):
        lo, c, hi = bins[m - 1], bins[m], bins[m + 1]
        fb[m - 1, lo:c] = (np.arange(lo, c) - lo) / max(c - lo, 1)
        fb[m - 1, c:hi] = (hi - np.arange(c, hi)) / max(hi - c, 1)
    return fb


def log_mel(clip: np.ndarray, fb: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(clip, (0, WIN)), WIN)[::HOP][:50]
    spec = np.abs(np.fft.rfft(frames * np.hanning(WIN), axis=1)) ** 2
    return np.log(spec @ fb.T + 1e-6)


class KWS(nn.Module):
    """Per-frame projection, one LSTM layer, classifier on the time-averaged LSTM output."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(MELS, 48)
        self.lstm = nn.LSTM(48, 64, batch_first=True)
        self.head = nn.Linear(64, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.proj(x))
        out, _ = self.lstm(h)
        return self.head(out.mean(dim=1))


def dataset(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    fb = mel_filters()
    feats, labels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label, word in enumerate(CLASSES):
            for _ in range(PER_CLASS):
                if word == "_noise_":
                    clip = noise(rng) * rng.uniform(0.05, 0.5)
                else:
                    voice = f"{rng.choice(ACCENTS)}+{rng.choice(VARIANTS)}"
                    speech = synth(
                        word,
                        voice,
                        int(rng.integers(110, 220)),
                        int(rng.integers(20, 80)),
                        Path(tmp),
                    )
                    clip = place(speech, rng)
                    snr_db = rng.uniform(5, 30)
                    n = noise(rng)
                    clip = clip + n * np.sqrt(
                        np.mean(clip**2) / np.mean(n**2) / 10 ** (snr_db / 10)
                    )
                feats.append(log_mel(clip, fb))
                labels.append(label)
    return np.stack(feats).astype(np.float32), np.array(labels, np.int64)


def main() -> None:
    started = time.time()
    seed_everything(0)
    rng = np.random.default_rng(0)
    x, y = dataset(rng)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    n_test = N_TEST
    x_tr, y_tr, x_te, y_te = x[n_test:], y[n_test:], x[:n_test], y[:n_test]
    mean, std = float(x_tr.mean()), float(x_tr.std())
    x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    model = KWS()
    train(model, x_tr, y_tr, epochs=60, lr=3e-3, batch=32)
    write_sample(
        "speech_kws",
        model,
        x_te.astype(np.float32),
        y_te,
        "features",
        {
            "title": "Keyword spotting LSTM",
            "domain": "speech",
            "description": "Spotting 8 spoken words or background noise in 1 s of audio: a "
            "per-frame linear layer, an LSTM and a classifier, trained on espeak-ng speech in "
            f"{len(ACCENTS)} accents and {len(VARIANTS)} voices mixed with noise.",
            "classes": CLASSES,
            "layout": "[batch, frames=50, mel bands=40]",
            "preprocessing": {
                "sample_rate": RATE,
                "clip_seconds": SECONDS,
                "window": WIN,
                "hop": HOP,
                "mel_bands": MELS,
                "log": "log(mel power + 1e-6)",
                "mean": mean,
                "std": std,
            },
            "seed": 0,
        },
        started,
    )


if __name__ == "__main__":
    main()
