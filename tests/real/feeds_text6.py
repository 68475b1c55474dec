"""Inputs for the sixth set of non-vision models, each after its package's own preprocessing
(cited): atspm-detector's traffic-signal detector network (a time series: the 1-s raster of
a signal controller's event log) and slovorez's Russian morpheme segmenter (character ids).

atspm-detector reads a controller's high-resolution event log with pandas and DuckDB, which
are not dependencies here; the log is simulated below instead (a two-ring, four-phase
controller with stop-bar presence detectors) and rasterised as the package does
(atspm_detector/funcnet.py: render and assemble_kept; streams.py: cover and onrate).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

SECONDS = 240  # one raster piece (the package's pieces are up to 30 min: T = 1800)
PHASES = 4  # candidate phases: two per ring, rings concurrent, as NEMA phases 2+6, 4+8
DETECTORS = 4  # one stop-bar detector on each phase's approach
FINE = 10  # samples per second of the simulated log, before the 1-s raster


def _signal(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Green, yellow and red-clearance indicators [PHASES, SECONDS * FINE] of a controller
    serving phases 0+2 then 1+3 (concurrent within a barrier) with varying greens."""
    n = SECONDS * FINE
    g, y, r = (np.zeros((PHASES, n), np.float32) for _ in range(3))
    t = 0
    while t < n:
        for pair in ((0, 2), (1, 3)):
            green = int(rng.uniform(12, 30) * FINE)
            for k in pair:
                g[k, t : t + green] = 1
                y[k, t + green : t + green + 4 * FINE] = 1
                r[k, t + green + 4 * FINE : t + green + 6 * FINE] = 1
            t += green + 6 * FINE
    return g, y, r


def _detector(rng: np.random.Generator, green: np.ndarray, rate: float) -> np.ndarray:
    """A stop-bar presence detector's occupancy on the fine grid: a car arriving on red
    occupies it until the queue leaves after green starts; on green, each car crosses it
    in about half a second."""
    occ = np.zeros_like(green)
    arrivals = np.flatnonzero(rng.random(green.size) < rate / FINE)
    for a in arrivals:
        if green[a]:
            occ[a : a + int(rng.uniform(0.3, 0.8) * FINE)] = 1
        else:
            starts = np.flatnonzero(green[a:])
            leave = a + (int(starts[0]) if starts.size else green.size) + 2 * FINE
            occ[a:leave] = 1
    return occ


def _bins(fine: np.ndarray) -> np.ndarray:
    # streams.cover: the fraction of each 1-s bin an interval covers
    return fine.reshape(*fine.shape[:-1], SECONDS, FINE).mean(-1)


def _edges(fine: np.ndarray, sign: int) -> np.ndarray:
    # funcnet._tent / streams.onrate: the ON (sign 1) or OFF (sign -1) edges in each bin
    step = np.diff(fine, axis=-1, prepend=0) * sign > 0
    return np.clip(_bins(step.astype(np.float32)) * FINE, 0.0, 2.0)


def atspm_raster(seed: int) -> np.ndarray:
    """funcnet.assemble_kept's [DETECTORS * PHASES, 15, SECONDS] raster of every (detector,
    candidate phase) pair of one simulated piece, channels in the manifest's order."""
    rng = np.random.default_rng(seed)
    g, y, r = _signal(rng)
    det = np.stack([_detector(rng, g[i], rng.uniform(0.05, 0.25)) for i in range(DETECTORS)])
    # a phase is called while a car waits at its detector and it is not green
    call = det * (1 - g)
    ph = np.stack([_bins(g), _bins(y), _bins(r), _bins(call), _edges(call, 1), _edges(call, -1)], 1)
    occ, on, off = _bins(det), _edges(det, 1), _edges(det, -1)
    onrate = np.clip(on, 0, 4) / 2.0  # render: det[:, 1] = clip(onrate, 0, 4) / 2
    sig_g, sig_c = ph[:, 0].sum(0), ph[:, 3].sum(0)
    coord = np.zeros(SECONDS, np.float32)  # free-running: no coordination plan
    partner = np.array([2, 3, 0, 1])  # the concurrent phase overlaps each green most
    di, ki = np.divmod(np.arange(DETECTORS * PHASES), PHASES)
    x = np.empty((di.size, 15, SECONDS), np.float32)
    x[:, 0], x[:, 1] = occ[di], onrate[di]
    x[:, 2:6] = ph[ki, 0:4]
    x[:, 6] = (sig_g[None] - ph[ki, 0]) / 2.0
    x[:, 7] = (sig_c[None] - ph[ki, 3]) / float(max(PHASES, 2) - 1)
    x[:, 8] = coord[None]
    x[:, 9], x[:, 10] = on[di], off[di]
    x[:, 11:13] = ph[ki, 4:6]
    x[:, 13], x[:, 14] = ph[partner[ki], 0], ph[partner[ki], 3]
    return x


def atspm_pair(n: int) -> dict[str, np.ndarray]:
    """``n`` pieces for the pair graph, one numbered feed each (x/i, [16, 15, 240])."""
    return {f"x/{i}": atspm_raster(seed=i) for i in range(n)}


def atspm_head(pair_model: Path, n: int) -> dict[str, np.ndarray]:
    """``n`` pieces for the head graph as FuncNet._run makes them: the float pair graph's
    logit [D, K] and embedding [D, K, 128] of every pair, and which detectors were active."""
    sess = ort.InferenceSession(str(pair_model), providers=["CPUExecutionProvider"])
    feeds = {}
    for i in range(n):
        x = atspm_raster(seed=i)
        s, z = sess.run(None, {"x": x})
        feeds[f"logit/{i}"] = s.reshape(DETECTORS, PHASES).astype(np.float32)
        feeds[f"Z/{i}"] = z.reshape(DETECTORS, PHASES, 128).astype(np.float32)
        # act = (nact > 0): a detector with any ON onset in the piece
        feeds[f"act/{i}"] = (x[::PHASES, 9].sum(-1) > 0).astype(np.float32)
    return feeds


# Russian words of 2 to 17 letters: prefixes, roots, suffixes, endings, a postfix, a hyphen
WORDS = (
    "переписывать", "подоконник", "невозможность", "учительница", "разговаривали",
    "пароход", "самолётостроение", "выздоравливающий", "по-русски", "беспокоиться",
    "дом", "краснота", "перевозчики", "заботливость", "размышления", "осветительный",
    "подсвечник", "водопроводчик", "недоразумение", "улыбнуться", "приспособление",
    "сказочница", "безоблачный", "вертолётный", "договорились", "кто-нибудь",
)  # fmt: skip


def slovorez(config: Path, n: int) -> dict[str, np.ndarray]:
    """``n`` batches of 8 words as slovorez/core/process.py's SlovorezTokenizer encodes them:
    each letter's id from the model's config.json (tokenizer_vocab, <UNK> otherwise), padded
    with 0 to the longest word of the batch (_pad_batch), int32 [8, length]."""
    vocab = json.loads(config.read_text(encoding="utf-8"))["mapping"]["tokenizer_vocab"]
    feeds = {}
    for i in range(n):
        words = [WORDS[(8 * i + j) % len(WORDS)] for j in range(8)]
        ids = [[vocab.get(c, vocab["<UNK>"]) for c in w] for w in words]
        arr = np.zeros((len(ids), max(map(len, ids))), np.int32)
        for j, row in enumerate(ids):
            arr[j, : len(row)] = row
        feeds[f"input_layer/{i}"] = arr
    return feeds
