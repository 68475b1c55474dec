"""A layer's output error when its input is quantized too, measured on the calibration
inputs: what SmoothQuant's search minimises and the sandbox's comparison shows.

With a static activation format the layer computes ``Q_a(x * m) W' + b'`` (``m``:
SmoothQuant's input multiplier, 1 otherwise), which is no longer the quadratic form of
:func:`.problem.output_error`; the error is summed feed by feed over the same feature
rows (:meth:`.problem.LayerGeometry.features`), against the float layer ``W x + b``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bitlens.core.formats import Format, Granularity, fake_quantize
from bitlens.core.recovery.problem import LayerGeometry, feature_pieces

if TYPE_CHECKING:
    from bitlens.core.engine.calibration import CalibrationMethod
    from bitlens.core.engine.engine import Engine
    from bitlens.core.model.types import Layer


@dataclass(frozen=True)
class Candidate:
    """One way to compute the layer: weight ``(groups, rows, cols)`` and bias (float64),
    the input multiplier (None: none) and the quantizer's range."""

    weight: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray | None
    value_range: tuple[Any, Any]


def input_range(
    values: Sequence[np.ndarray], name: str, fmt: Format, method: CalibrationMethod
) -> tuple[Any, Any]:
    """The calibrated range of ``values`` (the calibration feeds of one tensor) in the
    bound format ``fmt``, as the engine's calibration derives it (per tensor or channel)."""
    # imported here: bitlens.core.engine's package imports the Engine, which imports this
    from bitlens.core.engine.calibration import (
        ActivationStats,
        activation_range,
        channel_stats,
        needs_sample,
    )

    if fmt.granularity is Granularity.TENSOR:
        st = ActivationStats.of(list(values), name, sample=needs_sample(fmt, method))
        return activation_range(st, fmt, method)
    assert fmt.axis is not None
    per_tensor = fmt.replace(granularity=Granularity.TENSOR, axis=None)
    parts = [activation_range(st, per_tensor, method)
             for st in channel_stats(list(values), name, fmt.axis)]  # fmt: skip
    shape = [1] * values[0].ndim
    shape[fmt.axis] = len(parts)
    lo, hi = (np.array([p[i] for p in parts], np.float64).reshape(shape) for i in (0, 1))
    return lo, hi


def calibration_inputs(engine: Engine, layer: Layer) -> list[np.ndarray]:
    """The layer's float data input on each calibration feed."""
    ref = engine._ensure_ref()
    assert engine.data is not None
    return [np.asarray(ref[layer.activations[0]][i]) for i in engine.data.calibration]


def errors(
    geo: LayerGeometry, inputs: Sequence[np.ndarray], weight: np.ndarray, bias: np.ndarray,
    fmt: Format, candidates: Sequence[Candidate],
) -> tuple[float, list[float]]:
    """``(signal, squared output error of each candidate)`` over ``inputs`` against the
    float layer ``weight`` (weight-shaped) and ``bias`` (per output)."""
    w2 = geo.to_2d(np.asarray(weight, np.float64))
    b2 = np.asarray(bias, np.float64).reshape(geo.groups, geo.rows)
    signal, noise = 0.0, [0.0] * len(candidates)
    for x in inputs:
        for part in feature_pieces(np.asarray(x), geo):
            y = np.einsum("ngc,grc->ngr", geo.features(part), w2) + b2
            signal += float(np.sum(y**2))
            for k, c in enumerate(candidates):
                xs = part if c.multiplier is None else part * c.multiplier
                fq = geo.features(fake_quantize(xs, fmt, value_range=c.value_range))
                yq = np.einsum("ngc,grc->ngr", fq, c.weight)
                yq += np.asarray(c.bias, np.float64).reshape(geo.groups, geo.rows)
                noise[k] += float(np.sum((yq - y) ** 2))
    return signal, noise
