"""Activation range calibration: min-max, percentile, MSE-optimal, entropy (KL).

Statistics are gathered once from the float activations of the
calibration samples (:class:`ActivationStats`); a range for a given
activation format is then derived on demand and cached by the engine, so
switching a layer from uint8 to int4 re-derives a range without re-running
the model. MSE and entropy depend on the format's bit width, which is why
the range is per (activation, format).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from bitlens.core.errors import EngineError
from bitlens.core.formats import Family, Format, fake_quantize
from bitlens.core.formats.ranges import MSE_RATIOS

MAX_SAMPLE = 1 << 18  # values kept per activation for percentile/MSE/entropy
HIST_BINS = 2048


class CalibrationMethod(StrEnum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"
    ENTROPY = "entropy"


@dataclass(frozen=True)
class ActivationStats:
    lo: float
    hi: float
    # float64, a deterministic subsample of the values; None when only min-max was asked for
    # (the sample is 2 MiB per activation, and min-max calibration never reads it)
    sample: np.ndarray | None

    @classmethod
    def of(cls, arrays: list[np.ndarray], name: str, sample: bool = True) -> ActivationStats:
        """Min, max and (with ``sample``) every ``stride``-th value of the arrays taken as one
        flat sequence, read one array at a time (nothing is concatenated or widened but the
        sample)."""
        flats = [np.asarray(a).reshape(-1) for a in arrays]
        total = sum(f.size for f in flats)
        if total == 0:
            raise EngineError(f"activation {name!r} is empty on the calibration samples")
        stride = max(1, total // MAX_SAMPLE)
        lo, hi = np.inf, -np.inf
        parts: list[np.ndarray] = []
        offset = 0
        for flat in flats:
            if flat.size:
                if not np.isfinite(flat).all():
                    raise EngineError(
                        f"activation {name!r} holds NaN or infinite values on the "
                        "calibration samples"
                    )
                lo, hi = min(lo, float(flat.min())), max(hi, float(flat.max()))
                if sample:  # the global indices 0, stride, 2*stride... in this array
                    parts.append(flat[(-offset) % stride :: stride].astype(np.float64))
            offset += flat.size
        return cls(float(lo), float(hi), np.concatenate(parts) if sample else None)


def channel_stats(arrays: list[np.ndarray], name: str, axis: int) -> list[ActivationStats]:
    """Statistics of each channel along ``axis`` (per-channel activation quantization)."""
    moved = [np.moveaxis(np.asarray(a), axis, 0) for a in arrays]
    channels = moved[0].shape[0]
    if any(m.shape[0] != channels for m in moved):
        raise EngineError(f"activation {name!r} changes its channel count between samples")
    rows = np.concatenate([m.reshape(channels, -1) for m in moved], axis=1)
    return [ActivationStats.of([rows[c]], f"{name}[channel {c}]") for c in range(channels)]


def method_of(name: str) -> CalibrationMethod:
    try:
        return CalibrationMethod(name)
    except ValueError:
        known = ", ".join(m.value for m in CalibrationMethod)
        raise EngineError(f"unknown calibration method {name!r} (known: {known})") from None


def needs_sample(fmt: Format, method: CalibrationMethod) -> bool:
    """Whether :func:`activation_range` reads the statistics' sample (beyond min and max)."""
    return not (method is CalibrationMethod.MINMAX or (fmt.is_float and not fmt.has_scale))


def activation_range(
    stats: ActivationStats, fmt: Format, method: CalibrationMethod, percentile: float = 99.99
) -> tuple[float, float]:
    """The clipping range for one activation tensor in ``fmt``."""
    if not needs_sample(fmt, method):
        return stats.lo, stats.hi
    if stats.sample is None:
        raise EngineError("calibration statistics were gathered without a sample")
    x = stats.sample
    if method is CalibrationMethod.PERCENTILE:
        if fmt.symmetric:
            a = float(np.percentile(np.abs(x), percentile))
            return -a, a
        return float(np.percentile(x, 100 - percentile)), float(np.percentile(x, percentile))
    if method is CalibrationMethod.MSE:
        return _mse_range(stats, fmt)
    return _entropy_range(stats, fmt)


def _mse_range(stats: ActivationStats, fmt: Format) -> tuple[float, float]:
    assert stats.sample is not None
    best, best_err = (stats.lo, stats.hi), np.inf
    for r in MSE_RATIOS[::-1]:
        lo, hi = stats.lo * r, stats.hi * r
        rec = fake_quantize(stats.sample, fmt, value_range=(lo, hi))
        err = float(np.mean((rec - stats.sample) ** 2))
        if err < best_err:
            best, best_err = (lo, hi), err
    return best


def _entropy_range(stats: ActivationStats, fmt: Format) -> tuple[float, float]:
    """TensorRT-style KL calibration of the absolute-value threshold.

    Histogram |x| in HIST_BINS bins; for each candidate threshold, compare
    the clipped distribution with its quantization to ``levels`` bins and
    keep the threshold of least KL divergence.
    """
    if fmt.family is not Family.INT:
        raise EngineError(f"entropy calibration applies to integer formats, not {fmt.name}")
    assert stats.sample is not None
    a = np.abs(stats.sample)
    amax = float(a.max())
    if amax == 0.0:
        return stats.lo, stats.hi
    hist, edges = np.histogram(a, bins=HIST_BINS, range=(0.0, amax))
    levels = 2 ** (fmt.bits - 1) if fmt.symmetric or fmt.signed else 2**fmt.bits
    levels = max(levels, 2)
    best_t, best_kl = amax, np.inf
    for i in range(levels, HIST_BINS + 1, max(1, HIST_BINS // 256)):
        p = hist[:i].astype(np.float64).copy()
        p[-1] += hist[i:].sum()
        q = np.zeros(i)
        chunks = np.array_split(np.arange(i), levels)
        for c in chunks:
            nz = hist[c] > 0
            if nz.any():
                q[c[nz]] = hist[c].sum() / nz.sum()
        ps, qs = p.sum(), q.sum()
        if ps == 0 or qs == 0:
            continue
        p, q = p / ps, q / qs
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best_kl, best_t = kl, float(edges[i])
    return max(stats.lo, -best_t), min(stats.hi, best_t)
