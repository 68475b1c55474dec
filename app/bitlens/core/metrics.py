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
    """All error figures in one pass of float64 dot products (this runs on every evaluation)."""
    r = np.asarray(ref)
    a = np.asarray(approx)
    if r.shape != a.shape:
        raise ValueError(f"shape mismatch: reference {r.shape} vs approximation {a.shape}")
    if r.size == 0:
        return TensorError(0.0, math.inf, 1.0, 0.0, 0.0)
    r = r.astype(np.float64, copy=False).ravel()
    a = a.astype(np.float64, copy=False).ravel()
    d = r - a
    noise = float(d @ d)
    signal = float(r @ r)
    power_a = float(a @ a)
    if noise == 0.0:
        sqnr = math.inf
    elif signal == 0.0:
        sqnr = -math.inf
    else:
        sqnr = 10.0 * math.log10(signal / noise)
    if signal == 0.0 or power_a == 0.0:
        cos = 1.0 if signal == power_a else 0.0
    else:
        cos = float(r @ a) / math.sqrt(signal * power_a)
    rel = math.sqrt(noise / signal) if signal else (0.0 if noise == 0 else math.inf)
    return TensorError(
        mse=noise / r.size,
        sqnr_db=sqnr,
        cosine=cos,
        max_abs=float(np.max(np.abs(d))),
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
