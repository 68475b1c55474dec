"""Inputs for the fifth set of non-vision models, each after its package's own preprocessing
(cited): brainmaze-eeg-models' seizure and sleep-spindle detectors (time series), fed synthetic
EEG, and pyfrspell's French lemmatizer, fed French words.

The recordings are made here, deterministically: a 1/f background with an alpha rhythm, sleep
spindles (12-14 Hz bursts of 0.5-2 s, what the spindle detector looks for) and, in every other
recording, a stretch of 3 Hz spike-and-wave (what a seizure detector looks for). scipy is not
a dependency, so the two transforms the packages take from it are written with numpy.fft
below, each following the package's own code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FS_SEIZURE = 250  # an even rate >= 200 Hz, as seizure/_seizure_detect.py's _validate_fs asks
SEIZURE_SECONDS = 40  # 79 spectrogram columns (the package's windows are 300 s: 599)
SPINDLE_WINDOW = 7500  # spindles/_detector.py: WINDOW, 30 s at 250 Hz


def eeg(seconds: float, fs: int, seed: int, seizure: bool) -> np.ndarray:
    """A synthetic EEG trace, float64 [seconds * fs], in microvolts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / fs)
    spectrum[1:] /= np.sqrt(f[1:])  # pink (1/f power)
    x = np.fft.irfft(spectrum, n)
    x *= 20.0 / x.std()
    x += 8.0 * np.sin(2 * np.pi * (9.5 + rng.random()) * t + rng.random() * 6.28)
    for centre in rng.uniform(1.5, seconds - 1.5, size=int(seconds // 6)):
        width = rng.uniform(0.25, 0.6)
        burst = np.exp(-0.5 * ((t - centre) / width) ** 2)
        x += 25.0 * burst * np.sin(2 * np.pi * rng.uniform(12.0, 14.0) * t)
    if seizure:
        start = rng.uniform(0.3, 0.5) * seconds
        on = (t > start) & (t < start + 0.3 * seconds)
        phase = 2 * np.pi * 3.0 * (t - start)
        x += on * (60.0 * np.sin(phase) + 120.0 * np.maximum(np.cos(phase), 0.0) ** 12)
    return x


def _tukey(m: int, alpha: float = 0.25) -> np.ndarray:
    # scipy.signal.spectrogram's default window ('tukey', 0.25), periodic (get_window's
    # fftbins=True: the symmetric window of m + 1 points without its last one)
    n = np.arange(m + 1)
    w = np.ones(m + 1)
    edge = alpha * m / 2
    rise, fall = n < edge, n > m - edge
    w[rise] = 0.5 * (1 + np.cos(np.pi * (2 * n[rise] / (alpha * m) - 1)))
    w[fall] = 0.5 * (1 + np.cos(np.pi * (2 * n[fall] / (alpha * m) - 2 / alpha + 1)))
    return w[:m]


def seizure_spectrogram(x: np.ndarray, fs: int) -> np.ndarray:
    """brainmaze_eeg_models/seizure/_seizure_detect.py, preprocess_input, for one channel: z-score
    the signal; scipy's spectrogram (nperseg fs, a 0.5 s hop, detrend 'constant', density
    scaling); the first 100 one-Hz bins; each bin z-scored over time. float32 [1, 100, T]."""
    x = (x - x.mean()) / x.std()
    hop = fs // 2
    starts = range(0, x.size - fs + 1, hop)
    segments = np.stack([x[s : s + fs] for s in starts])
    segments -= segments.mean(axis=1, keepdims=True)
    win = _tukey(fs)
    power = np.abs(np.fft.rfft(segments * win, axis=1)) ** 2 / (fs * np.sum(win**2))
    power[:, 1:] *= 2  # one-sided; the per-bin z-score below makes the factor moot but for DC
    sxx = power[:, :100].T
    sxx = (sxx - sxx.mean(axis=1, keepdims=True)) / np.where(
        sxx.std(axis=1, keepdims=True) > 0, sxx.std(axis=1, keepdims=True), 1.0
    )
    return sxx[None].astype(np.float32)


def seizure(n: int) -> dict[str, np.ndarray]:
    """n numbered feeds ``x/i``: one channel, 40 s at 250 Hz, every other one with a seizure."""
    return {
        f"x/{i}": seizure_spectrogram(eeg(SEIZURE_SECONDS, FS_SEIZURE, i, i % 2 == 1), FS_SEIZURE)
        for i in range(n)
    }


# spindles/_cwt.py: OpenSpindleNet's scalogram, |pywt.cwt(x, geomspace(135, 270, 15),
# 'shan6-13', sampling_period=1/250)| with the wavelet sampled at 2**10 points on [-20, 20]
_SCALES = np.geomspace(135, 270, num=15)


def _scalogram(x: np.ndarray) -> np.ndarray:
    grid = np.linspace(-20.0, 20.0, 2**10)
    psi = np.sqrt(6.0) * np.sinc(6.0 * grid) * np.exp(2j * np.pi * 13.0 * grid)
    step = grid[1] - grid[0]
    int_psi = np.conj(np.cumsum(psi) * step)
    kernels = []
    for s in _SCALES:
        j = (np.arange(s * (grid[-1] - grid[0]) + 1) / (s * step)).astype(int)
        kernels.append(int_psi[j[j < int_psi.size]][::-1])
    n = x.size
    nfft = n + max(k.size for k in kernels)
    spectrum = np.fft.fft(x, nfft)
    out = np.empty((len(_SCALES), n))
    for i, (s, k) in enumerate(zip(_SCALES, kernels, strict=True)):
        dk = np.diff(np.concatenate(([0.0], k, [0.0])))
        y = np.fft.ifft(spectrum * (-np.sqrt(s) * np.fft.fft(dk, nfft)))
        off = int(np.floor((k.size - 2) / 2.0)) + 1
        out[i] = np.abs(y[off : off + n])
    return out


def _zscore(a: np.ndarray) -> np.ndarray:
    # spindles/_detector.py, _normalize: per-row z-score over the last axis
    return (a - a.mean(axis=-1, keepdims=True)) / a.std(axis=-1, keepdims=True)


def spindles(n: int) -> dict[str, np.ndarray]:
    """spindles/_detector.py, SpindleDetector.predict_windows: a 30 s window at 250 Hz,
    z-scored as ``raw_signal`` [1, 1, 7500]; demeaned, its scalogram z-scored per scale as
    ``spectrogram`` [1, 15, 7500]. Samples along axis 0 (the sizes are fixed)."""
    raw, spec = [], []
    for i in range(n):
        w = eeg(SPINDLE_WINDOW / 250, 250, 100 + i, seizure=False)
        raw.append(_zscore(w[None, :]))
        spec.append(_zscore(_scalogram(w - w.mean())))
    return {
        "raw_signal": np.stack(raw).astype(np.float32),
        "spectrogram": np.stack(spec).astype(np.float32),
    }


# French inflected words and their lemmas (pyfrspell's float model decodes each of these lemmas)
_FRENCH = (
    ("mangeaient", "manger"), ("chevaux", "cheval"), ("finissons", "finir"),
    ("allions", "aller"), ("belles", "beau"), ("prenaient", "prendre"),
)  # fmt: skip


def pyfrspell(folder: Path, n: int) -> dict[str, np.ndarray]:
    """pyfrspell/predictor.py, LemmaTypePredictor.predict: each character's index in the
    vocabulary's "itos" (<unk> when missing) then <eos>, as ``src`` int64 [1, len]; the
    decoder's input ``tgt_in`` int64 [1, steps] is <bos> then the tokens decoded so far, here
    the whole lemma (its last greedy step). Words differ in length: numbered feeds."""
    itos = json.loads((folder / "lemma_type_vocab.json").read_text(encoding="utf-8"))["itos"]
    stoi = {c: i for i, c in enumerate(itos)}
    feeds = {}
    for i in range(n):
        word, lemma = _FRENCH[i % len(_FRENCH)]
        src = [stoi.get(c, stoi["<unk>"]) for c in word] + [stoi["<eos>"]]
        tgt = [stoi["<bos>"]] + [stoi.get(c, stoi["<unk>"]) for c in lemma]
        feeds[f"src/{i}"] = np.array([src], np.int64)
        feeds[f"tgt_in/{i}"] = np.array([tgt], np.int64)
    return feeds
