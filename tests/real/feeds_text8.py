"""Inputs for pythainlp's thai2rom romanizer and EfficientWord-Net's hotword embedder, each
after its package's own preprocessing (cited)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tests.real import inputs, wheels_text8

# Thai words (hello, Thai language, Bangkok, Thailand, university, computer, school, food);
# thai2rom reads them as sawatdi, phasathai, krungthephomhankhon, prathetthai, ...
WORDS = (
    "สวัสดี",
    "ภาษาไทย",
    "กรุงเทพมหานคร",
    "ประเทศไทย",
    "มหาวิทยาลัย",
    "คอมพิวเตอร์",
    "โรงเรียน",
    "อาหาร",
)


def _tables() -> dict:
    return json.loads(
        wheels_text8.member_text(wheels_text8.PYTHAINLP, wheels_text8.THAI2ROM_TABLES)
    )


def thai2rom_encoder(n: int) -> dict[str, np.ndarray]:
    # pythainlp/transliterate/thai2rom_onnx.py, romanize: one word a run, its characters'
    # ids (<UNK> for others) then <end>, int64 [1, length]; input_lengths [length + 1]
    # (int32, as the model declares). One numbered feed per word: lengths differ.
    char_to_ix = _tables()["char_to_ix"]
    feeds = {}
    for i in range(n):
        word = WORDS[i % len(WORDS)]
        ids = [char_to_ix.get(ch, char_to_ix["<UNK>"]) for ch in word] + [char_to_ix["<end>"]]
        feeds[f"input_tensor/{i}"] = np.array([ids], np.int64)
        feeds[f"input_lengths/{i}"] = np.array([len(ids)], np.int32)
    return feeds


def thai2rom_decoder(encoder: Path, n: int, steps: int = 3) -> dict[str, np.ndarray]:
    # Seq2Seq_ONNX.run: the float encoder's outputs, its two final states joined into
    # decoder_hidden_1 [1, 1, 256], the mask of non-padding source ids (fed as float, as
    # the model declares), then greedy steps from <start>, each fed the token and state the
    # float decoder gave the step before. The first ``steps`` steps of each word, one
    # numbered feed per step.
    enc = ort.InferenceSession(str(encoder), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(encoder.with_name("thai2rom_decoder.onnx")),
                               providers=["CPUExecutionProvider"])  # fmt: skip
    words = thai2rom_encoder(-(-n // steps))
    start = _tables()["target_char_to_ix"]["<start>"]
    feeds, k = {}, 0
    for i in range(len(words) // 2):
        ids, length = words[f"input_tensor/{i}"], words[f"input_lengths/{i}"]
        outputs, h1, _h2 = enc.run(None, {"input_tensor": ids, "input_lengths": length})
        hidden = np.concatenate((h1[0], h1[1]), axis=1)[None]
        mask = (ids != 0).astype(np.float32)
        token = np.array([[start]], np.int32)
        for _ in range(steps):
            if k == n:
                return feeds
            step = {"decoder_input": token, "decoder_hidden_1": hidden,
                    "encoder_outputs": outputs, "mask": mask}  # fmt: skip
            feeds.update({f"{name}/{k}": v for name, v in step.items()})
            logits, hidden, _attention = dec.run(None, step)
            token = logits.argmax(1).astype(np.int32)[None]
            k += 1
    return feeds


def _logfbank(audio: np.ndarray, rate: int = 16000, bands: int = 64, nfft: int = 512) -> np.ndarray:
    # eff_word_net/audio_utils.py, logfbank (python_speech_features' as the package calls it
    # in audio_processing.py: winlen 0.025, winstep 0.01, nfilt 64, nfft 512, preemph 0): the
    # signal zero-padded to whole frames, no window, power |rfft|^2 / nfft, triangular mel
    # filters on floor((nfft + 1) * hz / rate) bins, an energy of 0 replaced by float eps, log.
    win, hop = int(0.025 * rate), int(0.01 * rate)
    frames = 1 + int(np.ceil((len(audio) - win) / hop))
    padded = np.concatenate([audio, np.zeros((frames - 1) * hop + win - len(audio))])
    power = (
        np.abs(np.fft.rfft(padded[np.arange(frames)[:, None] * hop + np.arange(win)], nfft)) ** 2
    )
    mel = np.linspace(0, 2595 * np.log10(1 + rate / 2 / 700), bands + 2)
    edge = np.floor((nfft + 1) * 700 * (10 ** (mel / 2595) - 1) / rate).astype(int)
    filters = np.zeros((bands, nfft // 2 + 1))
    for j in range(bands):
        lo, mid, hi = edge[j], edge[j + 1], edge[j + 2]
        filters[j, lo:mid] = (np.arange(lo, mid) - lo) / (mid - lo)
        filters[j, mid:hi] = (hi - np.arange(mid, hi)) / (hi - mid)
    energy = power / nfft @ filters.T
    return np.log(np.where(energy == 0, np.finfo(float).eps, energy))


def efficientword(n: int) -> dict[str, np.ndarray]:
    # eff_word_net/audio_processing.py, Resnet50_Arc_loss.audioToVector: a 1.5-s window at
    # 16 kHz (24000 samples), its log filterbank [149, 64] as input [1, 1, 149, 64].
    audio = [inputs.voiced_audio(24000, 16000, seed=50 + i) for i in range(n)]
    return {"input": np.stack([_logfbank(a)[None] for a in audio]).astype(np.float32)}
