"""Bias correction: remove the expected output shift that rounding the weight causes.

With ``y = W x + b`` and rounded ``W_q``, ``E[y_q - y] = (W_q - W) E[x]``; subtracting it
from the bias makes the quantized layer's output unbiased on the calibration inputs
(Nagel et al. 2019, https://arxiv.org/abs/1906.04721, empirical bias correction). For a
convolution ``E[x]`` is the mean im2col patch (zero padding included), so the shift is
the mean over every output position.
"""

from __future__ import annotations

import numpy as np

from bitlens.core.errors import EngineError
from bitlens.core.formats import Format
from bitlens.core.recovery import Recovered, Recovery
from bitlens.core.recovery.common import plain, values
from bitlens.core.recovery.problem import InputStats, LayerGeometry


def output_shift(dw: np.ndarray, geo: LayerGeometry, stats: InputStats) -> np.ndarray:
    """Expected output change per output channel (float64, ``groups * rows``)."""
    d = geo.to_2d(np.asarray(dw, np.float64))
    return np.einsum("grc,gc->gr", d, stats.mean).reshape(-1)


def bias_correction(
    w: np.ndarray, bias: np.ndarray | None, fmt: Format, geo: LayerGeometry, stats: InputStats
) -> Recovered:
    """Plain rounding of ``w`` and the bias that cancels its mean output shift; a layer
    without a bias (``bias`` None) gets one, ``-shift`` (see ``recovery_nodes``)."""
    q = plain(w, fmt)
    wq = values(q, w.dtype)
    shift = output_shift(wq.astype(np.float64) - w.astype(np.float64), geo, stats)
    b = np.zeros(shift.size) if bias is None else np.asarray(bias, np.float64)
    if b.size != shift.size:
        raise EngineError(
            f"bias correction needs one bias per output channel; the bias has {b.size} "
            f"values, the layer {shift.size} outputs"
        )
    new = (b.reshape(-1) - shift).astype(np.float32).reshape(b.shape)
    what = "bias created" if bias is None else "bias corrected"
    note = f"{what} by up to {float(np.max(np.abs(shift))):.3g}"
    return Recovered(Recovery.BIAS, wq, q, bias=new, note=note)
