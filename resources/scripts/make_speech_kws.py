"""Build the ``speech_kws`` sample: keyword spotting on log-mel frames with a Conv+LSTM net.

Needs the build-time venv and the ``espeak-ng`` synthesizer (Debian: ``apt-get install
espeak-ng``); every utterance is synthesized offline, nothing is downloaded::

    /work/torchvenv/bin/python resources/scripts/make_speech_kws.py

Writes ``resources/samples/speech_kws/{model.onnx,data.npz,meta.json}``.

Data: 8 keywords plus "_silence_" (noise only) and "_unknown_" (27 other words, the
Speech Commands fillers), spoken by espeak-ng with 8 English accents x 101 voice
variants at random speed and pitch, placed at a random offset in a 1 s window and mixed
with coloured noise (1/f^a, a in [0, 2]) at 0-30 dB SNR. The evaluation set uses voice
variants never heard in training.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import finish, seed_everything

SEED = 0
KEYWORDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]
CLASSES = [*KEYWORDS, "_silence_", "_unknown_"]
SILENCE, UNKNOWN = CLASSES.index("_silence_"), CLASSES.index("_unknown_")
FILLERS = [
    "backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four",
    "happy", "house", "learn", "marvin", "nine", "off", "on", "one", "seven", "sheila",
    "six", "three", "tree", "two", "visual", "wow", "zero",
]
ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
           "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
VARIANTS = [
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo",
    "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Mr serious", "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky",
    "UniRobot", "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda",
    "benjamin", "boris", "caleb", "croak", "david", "ed", "edward", "edward2", "f1", "f2", "f3",
    "f4", "f5", "fast", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4",
    "john", "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda",
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "max", "michel", "miguel",
    "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "robosoft", "robosoft2",
    "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro",
    "shelby", "steph", "steph2", "steph3", "travis", "victor", "whisper", "whisperf", "zac",
]
N_TEST_VARIANTS = 20

TRAIN_PER_KEYWORD = 400
TRAIN_UNKNOWN = 800
TRAIN_SILENCE = 400
TEST_PER_CLASS = 25
EPOCHS = 40

# Log-mel front end (numpy, below). Documented in meta.json.
SR = 16000
CLIP = SR  # 1 s
N_FFT = 512
WIN = 400  # 25 ms
HOP = 320  # 20 ms
N_MELS = 32
FMIN, FMAX = 20.0, 7600.0
LOG_FLOOR = 1e-6
N_FRAMES = 1 + (CLIP - WIN) // HOP  # 49
SNR_DB = (0.0, 30.0)


def espeak_version() -> str:
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def synthesize(word: str, accent: str, variant: str, speed: int, pitch: int) -> np.ndarray:
    """One utterance as float32 at 16 kHz, leading/trailing silence trimmed."""
    raw = subprocess.run(
        ["espeak-ng", "-v", f"{accent}+{variant}", "-s", str(speed), "-p", str(pitch),
         "--stdout", word],
        capture_output=True, check=True,
    ).stdout
    with wave.open(io.BytesIO(raw)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(10**9), dtype="<i2").astype(np.float32) / 32768.0
    # Linear-interpolation resampling is enough here: the mel range stops at 7.6 kHz,
    # below both Nyquist limits.
    t_out = np.arange(int(len(pcm) * SR / rate)) / SR
    audio = np.interp(t_out, np.arange(len(pcm)) / rate, pcm).astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.02 * np.max(np.abs(audio)))
    audio = audio[loud[0]:loud[-1] + 1] if loud.size else audio
    return audio[:CLIP]


def coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS noise with a 1/f^a power spectrum, a uniform in [0, 2] (white..brown)."""
    alpha = rng.uniform(0.0, 2.0)
    spec = rng.standard_normal(n // 2 + 1) + 1j * rng.standard_normal(n // 2 + 1)
    f = np.arange(n // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    noise = np.fft.irfft(spec / f ** (alpha / 2), n)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def make_clip(rng: np.random.Generator, speech: np.ndarray | None) -> np.ndarray:
    """Place speech at a random offset in 1 s, add noise at a random SNR, random gain."""
    clip = np.zeros(CLIP, np.float32)
    noise = coloured_noise(rng, CLIP)
    if speech is None:  # silence class: noise only, from barely there to loud
        return clip + noise * np.float32(10 ** rng.uniform(-4.5, -1.0))
    start = rng.integers(0, CLIP - len(speech) + 1)
    clip[start:start + len(speech)] = speech
    clip *= np.float32(10 ** rng.uniform(-1.0, 0.0) / (np.max(np.abs(clip)) + 1e-12))
    # SNR is measured over the spoken segment, not the whole second.
    rms = np.sqrt(np.mean(clip[start:start + len(speech)] ** 2))
    return clip + noise * np.float32(rms / 10 ** (rng.uniform(*SNR_DB) / 20))


def mel_filterbank() -> np.ndarray:
    """[N_MELS, N_FFT//2+1] HTK-mel triangles with unit peak."""
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(np.array(FMIN)), mel(np.array(FMAX)), N_MELS + 2))
    freqs = np.arange(N_FFT // 2 + 1) * SR / N_FFT
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lo) / (mid - lo)
    down = (hi - freqs) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down))


FBANK = mel_filterbank()
WINDOW = np.hanning(WIN + 1)[:-1]  # periodic Hann


def log_mel(clips: np.ndarray) -> np.ndarray:
    """[N, 16000] waveforms -> float32 [N, 49, 32] natural-log mel energies."""
    idx = np.arange(N_FRAMES)[:, None] * HOP + np.arange(WIN)[None, :]
    out = np.empty((len(clips), N_FRAMES, N_MELS), np.float32)
    for k in range(0, len(clips), 256):  # chunks keep the frame tensor small
        frames = clips[k:k + 256, idx].astype(np.float64) * WINDOW
        power = np.abs(np.fft.rfft(frames, n=N_FFT, axis=-1)) ** 2
        out[k:k + 256] = np.log(power @ FBANK.T + LOG_FLOOR)
    return out


class KeywordSpotter(nn.Module):
    """log-mel [B, T, F] -> normalize -> Conv1d(stride 2)+Relu -> LSTM -> time mean -> Gemm."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        # Normalization lives in the model so data.npz holds the plain log-mel features.
        self.register_buffer("mean", torch.from_numpy(mean))
        self.register_buffer("inv_std", torch.from_numpy(1.0 / std))
        self.conv = nn.Conv1d(N_MELS, 64, kernel_size=5, stride=2, padding=2)
        self.lstm = nn.LSTM(64, 64, batch_first=True)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(64, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.inv_std
        x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        h, _ = self.lstm(x)
        return self.fc(self.drop(h.mean(dim=1)))


def plan(rng: np.random.Generator, variants: list[str], counts: dict[int, int]
         ) -> list[tuple[int, tuple[str, str, str, int, int] | None]]:
    """(label, synthesis args or None for silence) for every clip, drawn up front so the
    parallel synthesis stays deterministic."""
    items: list[tuple[int, tuple[str, str, str, int, int] | None]] = []
    for label, n in counts.items():
        for _ in range(n):
            if label == SILENCE:
                items.append((label, None))
                continue
            word = FILLERS[rng.integers(len(FILLERS))] if label == UNKNOWN else CLASSES[label]
            args = (word, ACCENTS[rng.integers(len(ACCENTS))],
                    variants[rng.integers(len(variants))],
                    int(rng.integers(110, 231)), int(rng.integers(20, 81)))
            items.append((label, args))
    return items


def synthesize_all(items: list[tuple[int, tuple[str, str, str, int, int] | None]]
                   ) -> list[np.ndarray | None]:
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda it: None if it[1] is None else synthesize(*it[1]), items))


def render(rng: np.random.Generator, speech: list[np.ndarray | None]) -> np.ndarray:
    return log_mel(np.stack([make_clip(rng, s) for s in speech]))


def main() -> None:
    seed_everything(SEED)
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    order = rng.permutation(len(VARIANTS))
    test_variants = sorted(VARIANTS[i] for i in order[:N_TEST_VARIANTS])
    train_variants = [v for v in VARIANTS if v not in test_variants]

    train_counts = {k: TRAIN_PER_KEYWORD for k in range(len(KEYWORDS))}
    train_counts |= {SILENCE: TRAIN_SILENCE, UNKNOWN: TRAIN_UNKNOWN}
    train_items = plan(rng, train_variants, train_counts)
    test_items = plan(rng, test_variants, dict.fromkeys(range(len(CLASSES)), TEST_PER_CLASS))
    train_speech = synthesize_all(train_items)
    test_speech = synthesize_all(test_items)
    synth_s = time.perf_counter() - t0
    print(f"synthesized {len(train_items) + len(test_items)} clips in {synth_s:.0f} s",
          file=sys.stderr)

    y_tr = np.array([lab for lab, _ in train_items], np.int64)
    y_te = np.array([lab for lab, _ in test_items], np.int64)
    x_te = render(np.random.default_rng(SEED + 1), test_speech)
    aug_rng = np.random.default_rng(SEED + 2)
    first = render(aug_rng, train_speech)
    mean = first.mean(axis=(0, 1)).astype(np.float32)
    std = first.std(axis=(0, 1)).astype(np.float32)

    model = KeywordSpotter(mean, std)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, EPOCHS)
    gen = torch.Generator().manual_seed(SEED)
    yt = torch.from_numpy(y_tr)
    for epoch in range(EPOCHS):
        # Fresh offsets, noise colours and SNRs every epoch: the clean clips are reused.
        xt = torch.from_numpy(first if epoch == 0 else render(aug_rng, train_speech))
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for k in range(0, len(xt), 64):
            idx = perm[k:k + 64]
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        if epoch % 5 == 4:  # progress display only: the last epoch is kept regardless
            model.eval()
            with torch.no_grad():
                acc = (model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean()
            print(f"epoch {epoch + 1}: loss {total / len(xt):.4f} (held-out acc {acc:.3f})",
                  file=sys.stderr)
    train_s = time.perf_counter() - t0
    model.eval()

    meta = {
        "title": "Spoken keywords (Conv + LSTM)",
        "domain": "speech",
        "description": (
            "Keyword spotting: a Conv1d front end, one LSTM layer (ONNX LSTM op), mean over "
            "time and a Gemm classifier recognise 8 spoken commands, silence and other words "
            "from 1 s of log-mel features. The speech is synthesized offline with espeak-ng "
            "(8 English accents x 101 voice variants, random speed and pitch) and mixed with "
            "coloured noise at 0-30 dB SNR; the evaluation set uses 20 voice variants never "
            "heard in training."
        ),
        "class_names": CLASSES,
        "input": {
            "layout": "[batch, time frames, mel bands]",
            "preprocessing": (
                f"16 kHz mono, 1 s clip ({CLIP} samples); frames of {WIN} samples (25 ms, "
                f"periodic Hann window) every {HOP} samples (20 ms) -> {N_FRAMES} frames; "
                f"power spectrum |rfft(frame, n={N_FFT})|^2; {N_MELS} HTK-mel triangular "
                f"filters (unit peak) from {FMIN:g} to {FMAX:g} Hz; natural log of "
                f"(mel energy + {LOG_FLOOR:g}). Per-band normalization is inside the model."
            ),
            "sample_rate": SR,
            "n_fft": N_FFT,
            "win_length": WIN,
            "hop_length": HOP,
            "n_mels": N_MELS,
            "fmin": FMIN,
            "fmax": FMAX,
            "log_floor": LOG_FLOOR,
        },
        "made_by": {
            "script": "resources/scripts/make_speech_kws.py",
            "seed": SEED,
            "synthesizer": espeak_version(),
            "data": (
                f"train: {TRAIN_PER_KEYWORD} clips per keyword, {TRAIN_UNKNOWN} unknown-word "
                f"clips, {TRAIN_SILENCE} noise-only clips over {len(train_variants)} voice "
                f"variants, re-augmented every epoch; evaluation: {TEST_PER_CLASS} clips per "
                f"class over the held-out variants {test_variants}"
            ),
            "training": (f"Adam lr 3e-3, cosine schedule, {EPOCHS} epochs, batch 64, "
                         "dropout 0.2 before the classifier, gradient clipping 5"),
            "train_samples": len(y_tr),
            "synthesis_seconds": round(synth_s, 1),
            "train_seconds": round(train_s - synth_s, 1),
        },
    }
    finish("speech_kws", model, "logmel", x_te, y_te, meta)


if __name__ == "__main__":
    main()
