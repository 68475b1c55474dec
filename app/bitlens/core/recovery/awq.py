"""AWQ: scale each input channel of the weight up by ``s`` before rounding and the decoded
weight down by ``1/s``, so channels that see large activations are rounded more finely.

``s = mean|x|^alpha`` per input channel, normalised by ``sqrt(max * min)``, with ``alpha``
searched on a grid for the least output error on the calibration inputs (Lin et al. 2023,
https://arxiv.org/abs/2306.00978, section 3.2; ``auto_scale.py`` of
https://github.com/mit-han-lab/llm-awq). ``alpha = 0`` is plain rounding, so the search
never does worse than it on the calibration data. The ``1/s`` stays an exact float32
multiply of the decoded weight (``Recovered.input_scale``): the engine computes with that
product and the export writes the same multiply after the decode, which ONNX Runtime
folds when the session starts, so the output is the same bit for bit.
"""

from __future__ import annotations

import numpy as np

from bitlens.core.formats import Format, dequantize, quantize
from bitlens.core.recovery import Recovered, Recovery
from bitlens.core.recovery.problem import InputStats, LayerGeometry, output_error

GRID = 20


def channel_mean_abs(geo: LayerGeometry, stats: InputStats) -> np.ndarray:
    """Mean |x| per input channel (length ``geo.in_channels``)."""
    ch = geo.channel_of_col().reshape(-1)
    sums = np.bincount(ch, weights=stats.mean_abs.reshape(-1), minlength=geo.in_channels)
    return sums / geo.kernel_size


def scaled(w: np.ndarray, fmt: Format, geo: LayerGeometry, s: np.ndarray):
    """(QTensor of ``w * s``, float32 ``1/s`` in weight layout, the effective weight)."""
    s_w = geo.weight_input_scale(s.astype(np.float32))
    inv = (np.float32(1.0) / s_w).astype(np.float32)
    q = quantize((w.astype(np.float32) * s_w).astype(np.float32), fmt, what="weight")
    return q, inv, (dequantize(q) * inv).astype(w.dtype, copy=False)


def awq(w: np.ndarray, fmt: Format, geo: LayerGeometry, stats: InputStats) -> Recovered:
    x_mean = np.maximum(channel_mean_abs(geo, stats), 1e-8)
    w64 = np.asarray(w, np.float64)
    best = None
    for k in range(GRID):
        alpha = k / GRID
        s = x_mean**alpha
        s = s / np.sqrt(s.max() * s.min())
        s = np.clip(s, 1e-4, 1e4)
        q, inv, eff = scaled(w, fmt, geo, s)
        err = float(output_error(geo, stats, eff.astype(np.float64) - w64).sum())
        if best is None or err < best[0]:
            best = (err, alpha, q, inv, eff)
    assert best is not None
    _, alpha, q, inv, eff = best
    if alpha == 0.0:  # s is all ones: store plain codes, no multiply
        return Recovered(Recovery.AWQ, eff, q, note="AWQ: alpha 0 (plain rounding was best)")
    return Recovered(Recovery.AWQ, eff, q, input_scale=inv, note=f"AWQ: alpha {alpha:.2f}")
