"""Non-uniform lookup-table formats: NF (normal quantiles), log2, k-means.

A code is an index into a table of levels; the value is
``levels[code] * scale`` (NF, log2: fixed levels in [-1, 1] scaled by the
group's absolute maximum) or ``codebook[group, code]`` (k-means: fitted
levels, no scale). Exported as packed codes, a Gather and a Mul, which
compute exactly the float32 product below.
"""

from __future__ import annotations

from functools import cache
from statistics import NormalDist

import numpy as np

from bitlens.core.formats.spec import Family

# Lloyd's iterations are cheap here (O(k log n) on sorted values), so run to
# a fixed point; the cap only guards against a float rounding cycle.
KMEANS_MAX_ITERATIONS = 5000


def _frozen(a: np.ndarray) -> np.ndarray:
    """Cached level tables are shared by every QTensor: make them read-only."""
    a.flags.writeable = False
    return a


@cache
def nf_levels(bits: int) -> np.ndarray:
    """NF levels as in QLoRA's NF4, generalized to n bits.

    2^(n-1) positive and 2^(n-1) - 1 negative quantiles of N(0, 1), plus an
    exact zero, normalized to [-1, 1]. The offset keeps the extreme quantile
    finite (QLoRA's 0.9677 for 4 bits: the mean of the last two bin centres).
    """
    n_pos, n_neg = 2 ** (bits - 1), 2 ** (bits - 1) - 1
    offset = 0.5 * (1 - 1 / (2 * 15) + 1 - 1 / (2 * 16)) if bits == 4 else 1 - 0.5 / 2**bits
    nd = NormalDist()
    pos = [nd.inv_cdf(p) for p in np.linspace(offset, 0.5, n_pos + 1)[:-1]]
    neg = [-nd.inv_cdf(p) for p in np.linspace(offset, 0.5, n_neg + 1)[:-1]]
    levels = np.array(sorted([*pos, 0.0, *neg]), dtype=np.float64)
    levels /= np.abs(levels).max()
    return _frozen(levels.astype(np.float32))


@cache
def log2_levels(bits: int) -> np.ndarray:
    """0 and ±2^-j for j = 0 .. 2^(n-1) - 2: 2^n - 1 levels in n bits."""
    mags = 2.0 ** -np.arange(2 ** (bits - 1) - 1)
    return _frozen(np.array(sorted([*(-mags), 0.0, *mags]), dtype=np.float32))


def fixed_levels(family: Family, bits: int) -> np.ndarray:
    return nf_levels(bits) if family is Family.NF else log2_levels(bits)


def midpoints(levels: np.ndarray) -> np.ndarray:
    """Decision thresholds between sorted levels, rounded to float32.

    float32 so that an exported graph (``Greater(x, mids)``, ``ReduceSum``,
    ``Gather``) compares against exactly these numbers.
    """
    lv = np.asarray(levels, np.float64)
    return ((lv[1:] + lv[:-1]) / 2).astype(np.float32)


def nearest(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest level (levels sorted ascending); ties go to the lower level.

    The index is the number of :func:`midpoints` strictly below the value.
    """
    return np.searchsorted(midpoints(levels), values, side="left").astype(np.uint8)


def scaled_quantize(x: np.ndarray, scale: np.ndarray, levels: np.ndarray) -> np.ndarray:
    # Far outside a calibrated range x / scale may overflow to +-inf, which
    # still selects the outermost level: the intended saturation.
    with np.errstate(over="ignore"):
        return nearest(x.astype(np.float32) / scale.astype(np.float32), levels)


def scaled_dequantize(codes: np.ndarray, scale: np.ndarray, levels: np.ndarray) -> np.ndarray:
    return levels[codes.astype(np.int64)] * scale.astype(np.float32)


def absmax_scale(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    amax = np.maximum(np.abs(np.asarray(lo, np.float64)), np.abs(np.asarray(hi, np.float64)))
    scale = amax.astype(np.float32)
    tiny = np.float32(np.finfo(np.float32).tiny)
    return np.where(amax == 0, np.float32(1.0), np.maximum(scale, tiny)).astype(np.float32)


def lut_qdq_groups(levels: np.ndarray):
    def qdq(groups: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        s = absmax_scale(lo, hi)[:, None]
        return scaled_dequantize(scaled_quantize(groups, s, levels), s, levels).astype(np.float64)

    return qdq


def kmeans_1d(values: np.ndarray, k: int) -> np.ndarray:
    """Sorted float32 codebook of ``k`` levels fitted to 1-D ``values`` by Lloyd's algorithm.

    Initialized at evenly spaced quantiles, so it is deterministic, and
    iterated to a fixed point: every level is the mean of the values whose
    :func:`nearest` level it is (rounded to float32), or keeps its place if no
    value is nearest to it. Fewer distinct values than ``k`` fill the
    codebook with repeats (still valid).
    """
    v = np.sort(values.astype(np.float64).ravel())
    n = v.size
    # Clusters are contiguous runs of the sorted values, so their sums are
    # differences of one prefix sum (centred to keep the float64 sums small).
    shift = float(np.median(v))
    csum = np.concatenate([[0.0], np.cumsum(v - shift)])
    centres = np.quantile(v, (np.arange(k) + 0.5) / k).astype(np.float32)
    for _ in range(KMEANS_MAX_ITERATIONS):
        # Cluster j holds mids[j-1] < v <= mids[j], matching nearest()'s ties.
        bounds = np.searchsorted(v, midpoints(centres), side="right")
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [n]])
        counts = ends - starts
        means = (csum[ends] - csum[starts]) / np.maximum(counts, 1) + shift
        new = np.where(counts > 0, means, centres).astype(np.float32)
        new.sort()
        if np.array_equal(new, centres):
            break
        centres = new
    return centres
