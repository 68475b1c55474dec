"""Ternary {-a, 0, +a} and binary {-a, +a} quantizers.

Binary: code 1 means +a, 0 means -a, ``a = mean |x|`` (the L2-optimal
alpha for sign(x)); exported as ``Where(x >= 0, a, -a)``.
Ternary (TWN): threshold ``t = 0.7 mean |x|``, ``a`` the mean |x| above it;
codes -1, 0, +1 times ``a``. With the MSE range method the threshold ratio is
searched instead of fixed at 0.7.
"""

from __future__ import annotations

import numpy as np

TWN_RATIO = 0.7
_F32_MAX = float(np.finfo(np.float32).max)
# Threshold ratios the MSE search tries; TWN's own ratio goes first so the
# search (which keeps the first of equal errors) is never worse than TWN.
TERNARY_RATIOS = np.concatenate([[TWN_RATIO], np.linspace(0.3, 1.5, 49)])


_BLOCK_ELEMENTS = 1 << 19  # float64 temporaries of at most 4 MiB per block of groups


def binary_alpha(groups: np.ndarray) -> np.ndarray:
    """Mean |x| per row of ``groups`` (G, S), computed in float64 a block of rows at a time:
    each row is reduced alone, so the result is the whole array's, without float64 copies
    of all of it (a 34 MB weight took 200 MB and 1.2 s)."""
    rows = max(1, _BLOCK_ELEMENTS // max(1, groups.shape[1]))
    out = np.empty(groups.shape[0], np.float32)
    for at in range(0, groups.shape[0], rows):
        block = np.abs(np.asarray(groups[at : at + rows], np.float64))
        out[at : at + rows] = np.nanmean(block, axis=1)
    return out


def binary_quantize(x: np.ndarray) -> np.ndarray:
    return (x >= 0).astype(np.uint8)


def binary_dequantize(codes: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)
    return np.where(codes.astype(bool), a, -a).astype(np.float32)


def _ternary_fit(groups: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Threshold and alpha per group for a threshold ratio of mean |x|."""
    a = np.abs(groups)
    # Ratios above 1 can push the threshold past float32's range; capping it
    # there keeps it finite and changes no code (|x| <= float32 max).
    thr = np.minimum(ratio * np.nanmean(a, axis=1), _F32_MAX).astype(np.float32)
    # Select with the float32 threshold and values that ternary_quantize uses,
    # so alpha averages exactly the values that get a nonzero code (NaN padding
    # compares False).
    above = a.astype(np.float32) > thr[:, None]
    cnt = above.sum(axis=1)
    alpha = np.where(cnt > 0, np.where(above, a, 0.0).sum(axis=1) / np.maximum(cnt, 1), 0.0)
    return thr, alpha.astype(np.float32)


def ternary_params(groups: np.ndarray, search: bool) -> tuple[np.ndarray, np.ndarray]:
    if not search:
        return _ternary_fit(groups, TWN_RATIO)
    filled = np.nan_to_num(groups, nan=0.0)
    valid = ~np.isnan(groups)
    best_err = np.full(groups.shape[0], np.inf)
    best_t = best_a = None
    for r in TERNARY_RATIOS:
        t, a = _ternary_fit(groups, float(r))
        rec = ternary_dequantize(ternary_quantize(filled, t[:, None]), a[:, None])
        err = np.where(valid, (rec - filled) ** 2, 0.0).sum(axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best_t = t if best_t is None else np.where(better, t, best_t)
        best_a = a if best_a is None else np.where(better, a, best_a)
    assert best_t is not None and best_a is not None
    return best_t.astype(np.float32), best_a.astype(np.float32)


def ternary_quantize(x: np.ndarray, thr: np.ndarray) -> np.ndarray:
    x32 = x.astype(np.float32)
    return np.where(np.abs(x32) > thr.astype(np.float32), np.sign(x32), 0).astype(np.int8)


def ternary_dequantize(codes: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * alpha.astype(np.float32)
