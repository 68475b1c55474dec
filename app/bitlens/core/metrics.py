"""Error metrics as pure functions of (reference, approximation).

Computed in float64 whatever the inputs' precision, so that a metric never
reports error that came from its own arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

from bitlens.core.results import TensorError


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB; +inf when exact, -inf for a zero signal with noise."""
    r = np.asarray(ref, np.float64)
    noise = float(np.sum((r - np.asarray(approx, np.float64)) ** 2))
    signal = float(np.sum(r**2))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine(ref: np.ndarray, approx: np.ndarray) -> float:
    r = np.asarray(ref, np.float64).ravel()
    a = np.asarray(approx, np.float64).ravel()
    nr, na = float(np.linalg.norm(r)), float(np.linalg.norm(a))
    if nr == 0.0 and na == 0.0:
        return 1.0
    if nr == 0.0 or na == 0.0:
        return 0.0
    return float(np.dot(r, a) / (nr * na))


def tensor_error(ref: np.ndarray, approx: np.ndarray) -> TensorError:
    r = np.asarray(ref, np.float64)
    a = np.asarray(approx, np.float64)
    if r.shape != a.shape:
        raise ValueError(f"shape mismatch: reference {r.shape} vs approximation {a.shape}")
    d = r - a
    mse = float(np.mean(d**2)) if d.size else 0.0
    nr = float(np.linalg.norm(r))
    nd = float(np.linalg.norm(d))
    rel = nd / nr if nr else (0.0 if nd == 0 else math.inf)
    return TensorError(
        mse=mse,
        sqnr_db=sqnr_db(r, a),
        cosine=cosine(r, a),
        max_abs=float(np.max(np.abs(d))) if d.size else 0.0,
        rel_l2=rel,
    )


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def top1_agreement(ref_logits: np.ndarray, q_logits: np.ndarray, axis: int = -1) -> float:
    return float(np.mean(np.argmax(ref_logits, axis=axis) == np.argmax(q_logits, axis=axis)))


def mean_kl(ref_logits: np.ndarray, q_logits: np.ndarray, axis: int = -1) -> float:
    """Mean KL(softmax(ref) || softmax(q)) over all but ``axis``."""
    p = softmax(ref_logits, axis)
    q = softmax(q_logits, axis)
    eps = 1e-12
    return float(np.mean(np.sum(p * (np.log(p + eps) - np.log(q + eps)), axis=axis)))
