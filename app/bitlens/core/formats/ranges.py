"""Range (clipping) selection per group: min-max, percentile, MSE-optimal.

All functions take groups as a ``(G, S)`` float64 array that may hold NaN
padding (partial blocks) and return per-group ``(lo, hi)`` as float64.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bitlens.core.formats.spec import Format, RangeMethod

# Clip ratios the MSE search tries, as fractions of the min-max range.
MSE_RATIOS = np.linspace(0.25, 1.0, 61)

QdqFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def minmax(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group min and max, skipping NaN padding, as float64.

    ``fmin``/``fmax`` skip NaN without the full-size copy ``nanmin`` makes;
    a min or max is one of the values, so widening afterwards is exact.
    """
    lo = np.fmin.reduce(groups, axis=1).astype(np.float64)
    hi = np.fmax.reduce(groups, axis=1).astype(np.float64)
    return lo, hi


def percentile(groups: np.ndarray, pct: float, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    if symmetric:
        amax = np.nanpercentile(np.abs(groups), pct, axis=1)
        return -amax, amax
    return np.nanpercentile(groups, 100.0 - pct, axis=1), np.nanpercentile(groups, pct, axis=1)


def mse_search(
    groups: np.ndarray, lo: np.ndarray, hi: np.ndarray, qdq: QdqFn
) -> tuple[np.ndarray, np.ndarray]:
    """Shrink each group's range by the ratio that minimizes reconstruction MSE.

    ``qdq(groups, lo, hi)`` must quantize and dequantize ``groups`` with
    per-group ranges; the full range (ratio 1) is always a candidate, so the
    result is never worse than min-max.
    """
    valid = ~np.isnan(groups)
    filled = np.where(valid, groups, 0.0)
    best_err = np.full(groups.shape[0], np.inf)
    best = np.ones(groups.shape[0])
    for r in MSE_RATIOS[::-1]:
        with np.errstate(over="ignore"):  # a grid past float32's range: err = inf, never best
            rec = qdq(filled, lo * r, hi * r)
        err = np.where(valid, (rec - filled) ** 2, 0.0).sum(axis=1)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best = np.where(better, r, best)
    return lo * best, hi * best


def group_range(
    groups: np.ndarray, fmt: Format, qdq: QdqFn | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group clipping range for ``fmt``'s range method."""
    if fmt.range_method is RangeMethod.PERCENTILE:
        return percentile(groups, fmt.percentile, fmt.symmetric)
    lo, hi = minmax(groups)
    if fmt.range_method is RangeMethod.MSE:
        if qdq is None:
            raise ValueError("MSE range search needs a quantize-dequantize function")
        return mse_search(groups, lo, hi, qdq)
    return lo, hi
