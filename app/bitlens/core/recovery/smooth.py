"""SmoothQuant: move the difficulty of quantizing an activation with outlier channels into
the weight, per input channel, before both are quantized.

``s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)`` from the calibration inputs (Xiao et al.
2022, https://arxiv.org/abs/2211.10438, eq. 4; the ``smooth_lm`` of
https://github.com/mit-han-lab/smoothquant ``smooth.py`` computes the same), ``alpha``
searched per layer for the least output error with the activation quantized as planned
(the paper tunes one alpha per model). Plain rounding (``s = 1``) is deliberately not a
candidate: chosen layer by layer where it won on the calibration feeds, it lost on the
held-out ones (model-output gain over plain at W8A8 / W8A6, alpha 0.5 alone: speech
+3.40 / +0.97 dB, text +0.86 / +1.63; alpha 0.5 or s = 1: -0.06 / 0.00 and +1.18 / +0.07).
The layer then computes
``Q(X / s) Q(W s)``: the activation is multiplied by the float32 ``1/s``
(:attr:`Recovered.act_scale`) in the graph, before its quantizer, in the engine
(:mod:`bitlens.core.engine.recovery_nodes`) and in the export alike, and the weight stored
is ``W s`` rounded. Folding ``1/s`` into the op before would change that op's
other readers and its float rounding, so the multiply stays a node of its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bitlens.core.errors import EngineError
from bitlens.core.formats import Format, dequantize, quantize
from bitlens.core.recovery import Recovered, Recovery
from bitlens.core.recovery.problem import InputStats, LayerGeometry, output_error

ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)  # the paper's 0.5 and the 0.4..0.8 it reports
LIMIT = 1e4  # bound on s (and 1/s): a dead channel must not blow the other side up


def per_channel_max(geo: LayerGeometry, cols: np.ndarray) -> np.ndarray:
    """Max over each input channel's columns of a ``(groups, cols)`` array."""
    out = np.zeros(geo.in_channels)
    np.maximum.at(out, geo.channel_of_col().reshape(-1), np.asarray(cols).reshape(-1))
    return out


def migration_scales(
    w: np.ndarray, geo: LayerGeometry, stats: InputStats, alpha: float = 0.5
) -> np.ndarray:
    """``s`` per input channel (float32); 1 where a channel's activation or weight is 0."""
    x_max = per_channel_max(geo, stats.abs_max)
    w_max = per_channel_max(geo, np.abs(geo.to_2d(np.asarray(w, np.float64))).max(axis=1))
    live = (x_max > 0) & (w_max > 0)
    s = np.ones(geo.in_channels)
    s[live] = x_max[live] ** alpha / w_max[live] ** (1.0 - alpha)
    return np.clip(s, 1.0 / LIMIT, LIMIT).astype(np.float32)


def activation_layout(geo: LayerGeometry, s: np.ndarray) -> np.ndarray:
    """A per-input-channel vector shaped to broadcast against the layer's data input:
    ``(C, 1, ...)`` for a convolution (NC...), ``(K,)`` for Gemm and MatMul (last axis)."""
    if geo.op_type == "Conv":
        return s.reshape(-1, *([1] * len(geo.kernel)))
    return s.reshape(-1)


Score = Callable[[np.ndarray, np.ndarray], float]  # (input multiplier, weight) -> error


def smoothquant(
    w: np.ndarray, fmt: Format, geo: LayerGeometry, stats: InputStats, score: Score | None = None
) -> Recovered:
    """SmoothQuant of weight ``w`` in ``fmt`` (bound to the weight's axes), ``alpha``
    searched on :data:`ALPHAS` for the least error on the calibration inputs.

    ``score(act_scale, weight)``: the layer's squared output error on the calibration
    inputs when it reads ``x * act_scale`` (its quantizer calibrated on that) with the
    stored ``weight``; None (no static activation quantizer): the weight's output error
    alone (:func:`.problem.output_error`), where the input is exact.
    """
    if geo.trans_a:
        raise EngineError("SmoothQuant needs Gemm transA = 0 (the input's channels last)")
    w64 = np.asarray(w, np.float64)
    best: tuple[float, Recovered] | None = None
    for alpha in ALPHAS:
        rec = _scaled(w, fmt, geo, migration_scales(w, geo, stats, alpha), alpha)
        assert rec.act_scale is not None and rec.effective is not None
        if score is not None:
            err = score(rec.act_scale, rec.weight)
        else:
            err = float(output_error(geo, stats, rec.effective.astype(np.float64) - w64).sum())
        if best is None or err < best[0]:
            best = (err, rec)
    assert best is not None
    return best[1]


def _scaled(w: np.ndarray, fmt: Format, geo: LayerGeometry, s: np.ndarray,
            alpha: float) -> Recovered:
    inv = (np.float32(1.0) / s).astype(np.float32)
    s_w = geo.weight_input_scale(s)
    q = quantize((np.asarray(w, np.float32) * s_w).astype(np.float32), fmt, what="weight")
    decoded = dequantize(q)
    effective = (decoded * geo.weight_input_scale(inv)).astype(w.dtype, copy=False)
    note = f"SmoothQuant: alpha {alpha:.2f}, s {float(s.min()):.3g}..{float(s.max()):.3g}"
    return Recovered(
        Recovery.SMOOTH, decoded.astype(w.dtype, copy=False), q, note=note,
        act_scale=activation_layout(geo, inv), effective=effective,
    )  # fmt: skip
