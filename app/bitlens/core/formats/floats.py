"""Floating-point formats: plain casts (fp64 ... bf16) and scaled fp8.

fp16 and bf16 saturate to their largest finite value rather than overflow
to infinity (what ONNX Runtime's float16 converter does for weights).
fp8 follows ONNX QuantizeLinear with ``saturate=1``: ``q = sat(cast(x / s))``,
``x_hat = cast(q) * s``, with ``s = amax / fmax`` per group.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

FLOAT_DTYPES: dict[str, np.dtype] = {
    "fp64": np.dtype(np.float64),
    "fp32": np.dtype(np.float32),
    "fp16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "fp8e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "fp8e5m2": np.dtype(ml_dtypes.float8_e5m2),
}


def fmax(kind: str) -> float:
    return float(ml_dtypes.finfo(FLOAT_DTYPES[kind]).max)


def cast(x: np.ndarray, kind: str) -> np.ndarray:
    """Round ``x`` to the float kind (nearest even), saturating at its finite range."""
    dt = FLOAT_DTYPES[kind]
    if kind == "fp64" or x.dtype == dt:
        return x.astype(dt)
    m = fmax(kind)
    # Clip in the source precision: the clip bound is exactly representable.
    # (fp32 clips too, so float64 values beyond its range saturate, not turn inf.)
    return np.clip(x, -m, m).astype(dt)


def fp8_scale(lo: np.ndarray, hi: np.ndarray, kind: str) -> np.ndarray:
    amax = np.maximum(np.abs(np.asarray(lo, np.float64)), np.abs(np.asarray(hi, np.float64)))
    scale = (amax / fmax(kind)).astype(np.float32)
    tiny = np.float32(np.finfo(np.float32).tiny)
    return np.where(amax == 0, np.float32(1.0), np.maximum(scale, tiny)).astype(np.float32)


def fp8_extremes(scale: np.ndarray, kind: str) -> np.ndarray:
    """The largest magnitude each group reconstructs (float32, may be inf)."""
    with np.errstate(over="ignore"):
        return np.float32(fmax(kind)) * np.asarray(scale, np.float32)


def fp8_quantize(x: np.ndarray, scale: np.ndarray, kind: str) -> np.ndarray:
    # Far outside a calibrated range x / scale may overflow to +-inf; the cast
    # saturates it to the largest fp8 value, as QuantizeLinear(saturate=1) does.
    with np.errstate(over="ignore"):
        return cast(x.astype(np.float32) / scale.astype(np.float32), kind)


def fp8_dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scale.astype(np.float32)


def fp8_qdq_groups(kind: str):
    def qdq(groups: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        s = fp8_scale(lo, hi, kind)[:, None]
        return fp8_dequantize(fp8_quantize(groups, s, kind), s).astype(np.float64)

    return qdq
