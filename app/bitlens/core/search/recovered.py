"""Recovery methods as part of a weight candidate: for each (layer, low-bit integer format),
the method of ``SearchOptions.recovery`` that lowers the layer's own output error on the
calibration inputs the most, and by how much.

A weight change ``dW`` changes the layer's output on its calibration inputs by
``sum_r dW_r H dW_r^T`` (``H`` the inputs' second moments, GPTQ's objective:
https://arxiv.org/abs/2210.17323; :func:`bitlens.core.recovery.problem.output_error`).
GPTQ and the clipping search keep the format's bytes and lower that figure, so the search
treats "int3 per channel with GPTQ" as the layer's int3 candidate: same bytes, less noise.
Its predicted noise is the plain weight noise times the ratio of the two output errors
(the search measures the layer for real once the path shows it matters). Methods are
compared on this proxy, not by running the model: one numpy problem per (layer, format).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bitlens.core.engine import Engine
from bitlens.core.engine.recovery_cache import layer_geometry
from bitlens.core.errors import BitlensError
from bitlens.core.formats import Family, Format
from bitlens.core.model.types import Layer
from bitlens.core.recovery import Recovery, parse_recovery
from bitlens.core.recovery.problem import output_error
from bitlens.core.recovery.support import check_recovery

# Recovery is tried on integer formats of at most this many bits: at 8 bits plain rounding
# is already near float, and each try costs a GPTQ pass over the layer.
MAX_BITS = 4
# Layers whose calibration inputs hold fewer feature vectors than the layer has input
# features are left to plain rounding too: their second-moment matrix is singular, so GPTQ
# fits its compensation to those few vectors, and its gain, measured on the same vectors,
# says nothing of other inputs. magika's last Dense (512 features, 4 calibration rows):
# int4 per channel with GPTQ had 0.042 output error on 32 new rows, plain int4 0.030.
# Layers with more input features than this are left to plain rounding: their input
# Hessian (features squared, float64) and GPTQ's column loop grow too large for a search
# step (a 3x3x512 conv has 4608 features: a 170 MB Hessian).
MAX_FEATURES = 2304
# GPTQ chooses every code of the weight to fit the calibration inputs' second moments ``H``:
# from fewer feature rows than input features ``H`` is rank-deficient and GPTQ moves the
# rounding error into the directions the calibration rows never took. Its error on those rows
# then reads far below plain rounding's while on other inputs it is worse (a 64x256 weight at
# int4, correlated inputs: 0.17 of plain rounding's error on the rows it fit, 1.38 on 20000
# others with half as many rows as features; 0.42 / 0.71 with twice as many; 0.50 / 0.56
# with 8 times). vietcombank-captcha's digit heads (512 features, one row per image, 4
# calibration images) took int4 + GPTQ that way and lost to W8A8 on images not seen. Fewer
# rows than this many per feature: the method is not offered (the plain format still is).
MIN_ROWS_PER_FEATURE = 2
FITS_EVERY_CODE = frozenset({Recovery.GPTQ})


@dataclass(frozen=True)
class Recovered:
    """The method a (layer, format) candidate uses and its output-noise factor (< 1)."""

    method: Recovery
    noise_factor: float  # recovered output error / plain rounding's, on calibration inputs


def parse_methods(names: Sequence[str]) -> tuple[Recovery, ...]:
    """The recovery methods named (``"none"`` entries ignored); unknown names raise."""
    out: list[Recovery] = []
    for name in names:
        method = parse_recovery(name)
        if method is not None and method not in out:
            out.append(method)
    return tuple(out)


def eligible(layer: Layer, fmt: Format, method: Recovery) -> bool:
    if fmt.family is not Family.INT or fmt.bits > MAX_BITS:
        return False
    try:
        check_recovery(layer, fmt, method)
    except BitlensError:
        return False
    return True


def too_wide(engine: Engine, layer: Layer) -> bool:
    """Whether ``layer`` reads more input features than MAX_FEATURES: no recovery method is
    computed there, bias correction included (its statistics hold the same features x
    features matrix)."""
    try:
        return layer_geometry(engine, layer).cols > MAX_FEATURES
    except (BitlensError, ValueError, KeyError):
        return False  # no geometry: check_recovery refuses the layer anyway


def choose(
    engine: Engine, layer: Layer, formats: Sequence[Format], methods: Sequence[Recovery]
) -> dict[Format, Recovered]:
    """Per format, the method that lowers the layer's calibration output error most (only
    formats where one lowers it)."""
    todo = [(f, m) for f in formats for m in methods if eligible(layer, f, m)]
    if not todo:
        return {}
    w = layer.weights[0]
    try:
        # the geometry first: the statistics hold a features x features matrix, which the
        # feature limit is there to keep small (SFace's last Gemm: 50176 features, a 20 GB
        # matrix; the search was killed for memory at 16.9 GB before it checked the limit)
        if too_wide(engine, layer):
            return {}
        geo, stats = engine.recovery.stats(layer)
    except BitlensError:
        return {}  # the layer's input cannot be read as features (an unsupported geometry)
    if stats.count < geo.cols:
        return {}
    if stats.count < MIN_ROWS_PER_FEATURE * geo.cols:
        todo = [(f, m) for f, m in todo if m not in FITS_EVERY_CODE]
        if not todo:
            return {}
    value = np.asarray(engine.model.weight(w), np.float64)

    def err(values: np.ndarray) -> float:
        return float(output_error(geo, stats, np.asarray(values, np.float64) - value).sum())

    out: dict[Format, Recovered] = {}
    plain: dict[Format, float] = {}
    for fmt, method in todo:
        if fmt not in plain:
            plain[fmt] = err(engine.quantized(w, fmt).values)
        try:
            rec = engine.recovery.result(layer, fmt, method)
        except BitlensError:
            continue
        base = plain[fmt]
        e = err(rec.seen_weight)
        best = out.get(fmt)
        if base > 0 and e < base and (best is None or e / base < best.noise_factor**2):
            out[fmt] = Recovered(method, float(np.sqrt(e / base)))
    return out
