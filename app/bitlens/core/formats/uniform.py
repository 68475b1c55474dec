"""Uniform integer quantization, bit-exact with ONNX Runtime's Q/DQ.

Affine form, with the range nudged so that zero is exactly representable
(what ONNX QDQ requires)::

    scale = (hi - lo) / (qmax - qmin)          zero_point = round(qmin - lo / scale)
    q     = clip(round(x / scale) + zero_point, qmin, qmax)
    x_hat = (q - zero_point) * scale

For an unsigned n-bit code (qmin = 0, qmax = 2^n - 1) and a range whose
``lo`` lies on the grid this is exactly ``Δ = (hi - lo) / (2^n - 1)``,
``q = clip(round((x - lo) / Δ), 0, 2^n - 1)``, ``x_hat = lo + Δ q``.
ONNX Runtime divides by the scale in float32 and rounds half to even
(``nearbyintf``); the code below does the same arithmetic in float32.
"""

from __future__ import annotations

import numpy as np

from bitlens.core.formats.spec import Format

_F32_TINY = np.float32(np.finfo(np.float32).tiny)


def code_dtype(fmt: Format) -> np.dtype:
    """The smallest numpy integer type holding the format's codes."""
    if fmt.bits <= 8:
        return np.dtype(np.int8 if fmt.signed else np.uint8)
    return np.dtype(np.int16 if fmt.signed else np.uint16)


def params_from_range(lo: np.ndarray, hi: np.ndarray, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """Scale (float32) and zero point (code dtype) for per-group ranges ``lo``/``hi``."""
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    qmin, qmax = fmt.qmin, fmt.qmax
    if fmt.symmetric:
        amax = np.maximum(-lo, hi)
        lo, hi = -amax, amax
    span = hi - lo
    scale64 = span / float(qmax - qmin)
    scale = scale64.astype(np.float32)
    # A zero range (all-zero tensor), or one so tiny its scale is below float32's smallest
    # normal, gets scale 1: its values all code to the zero point and decode to 0, as
    # onnxruntime.quantization's compute_scale_zp does (quant_utils.py: "if scale <
    # numpy.finfo(rmax.dtype).tiny: scale = 1.0"). A scale of that smallest normal instead
    # put a bias at s_x * 1.2e-38, beyond int32: PP-OCRv5's text-line classifier has a conv
    # channel of subnormal weights whose bias ONNX Runtime then quantized itself, wrongly.
    scale = np.where(scale64 < _F32_TINY, np.float32(1.0), scale).astype(np.float32)
    if fmt.symmetric:
        zp = np.full(scale.shape, 0 if fmt.signed else (qmax + qmin + 1) // 2, dtype=np.float64)
    else:
        zp = np.clip(np.rint(qmin - lo / scale.astype(np.float64)), qmin, qmax)
    return scale, zp.astype(code_dtype(fmt))


def quantize(x: np.ndarray, scale: np.ndarray, zp: np.ndarray, fmt: Format) -> np.ndarray:
    """Codes for ``x`` with already-broadcastable ``scale`` and ``zp`` (as ORT computes them)."""
    # x / scale may overflow to +-inf for values far outside a calibrated
    # range; the clip saturates them exactly as ORT does.
    # Same float32 operations as before, in one buffer: a large weight
    # otherwise costs four full-size temporaries.
    x32 = np.asarray(x).astype(np.float32, copy=False)
    s32 = np.asarray(scale).astype(np.float32, copy=False)
    z32 = np.asarray(zp).astype(np.float32, copy=False)
    with np.errstate(over="ignore"):
        v = np.divide(x32, s32, dtype=np.float32)
    if v.shape != np.broadcast_shapes(v.shape, z32.shape):
        v = np.broadcast_to(v, np.broadcast_shapes(v.shape, z32.shape)).copy()
    np.rint(v, out=v)
    if z32.any():  # symmetric signed formats: adding 0 changes no code (-0.0 becomes 0 too)
        v += z32
    np.clip(v, fmt.qmin, fmt.qmax, out=v)
    return v.astype(code_dtype(fmt))


def dequantize(q: np.ndarray, scale: np.ndarray, zp: np.ndarray) -> np.ndarray:
    """``(q - zp) * scale`` in float32, as ORT's DequantizeLinear computes it.

    Codes and zero points have at most 16 bits, so their difference is an
    integer float32 holds exactly: subtracting in float32 equals the int32
    subtraction then conversion, and saves two full-size temporaries.
    """
    s32 = np.asarray(scale).astype(np.float32, copy=False)
    z32 = np.asarray(zp).astype(np.float32, copy=False)
    shape = np.broadcast_shapes(np.shape(q), z32.shape, s32.shape)
    v = np.asarray(q).astype(np.float32)
    if v.shape != shape:
        v = np.broadcast_to(v, shape).copy()
    if z32.any():  # a zero point of 0 (symmetric signed formats): the same floats without it
        v -= z32
    v *= s32
    return v


def grid_extremes(scale: np.ndarray, zp: np.ndarray, fmt: Format) -> np.ndarray:
    """The lowest and highest values each group's grid reconstructs (float32, may be inf)."""
    ends = np.array([fmt.qmin, fmt.qmax], dtype=np.int32).reshape(2, *([1] * np.ndim(scale)))
    with np.errstate(over="ignore"):
        return dequantize(ends, np.asarray(scale)[None], np.asarray(zp)[None])


def qdq_groups(fmt: Format):
    """A ``(groups, lo, hi) -> reconstruction`` function for range searches."""

    def qdq(groups: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        s, z = params_from_range(lo, hi, fmt)
        s, z = s[:, None], z[:, None]
        return dequantize(quantize(groups, s, z, fmt), s, z).astype(np.float64)

    return qdq
