"""The sandbox's method comparison for a layer whose input is quantized too: each method's
output error with the activation quantized as planned, measured on the calibration inputs.

With a static activation format, the layer computes ``Q_a(x) W'`` (plain rounding and the
weight methods) or ``Q_a(x / s) (W s)'`` (SmoothQuant, whose quantizer has its own range),
so the error is no longer the quadratic form of :mod:`.compare`; it is summed here feed by
feed over the same feature rows (:meth:`.problem.LayerGeometry.features`), against the
float layer ``W x + b``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.errors import BitlensError
from bitlens.core.formats import fake_quantize
from bitlens.core.recovery import Recovery
from bitlens.core.recovery.problem import LayerGeometry, feature_pieces
from bitlens.core.weights import bind

if TYPE_CHECKING:
    from bitlens.core.engine.engine import Engine
    from bitlens.core.formats import Format
    from bitlens.core.model.types import Layer


@dataclass(frozen=True)
class MethodRow:
    method: str  # "plain" or a Recovery value
    sqnr_db: float | None  # None: the method does not apply (see note)
    note: str = ""


@dataclass(frozen=True)
class _Candidate:
    method: str
    weight: np.ndarray  # (groups, rows, cols), float64
    bias: np.ndarray  # per output, float64
    act_scale: np.ndarray | None  # SmoothQuant's multiplier of the input
    value_range: tuple
    note: str


def rows(
    engine: Engine, layer: Layer, fmt: Format, activation: Format, geo: LayerGeometry
) -> Iterator[MethodRow]:
    """Plain rounding and each method, with ``layer``'s input quantized in ``activation``."""
    from bitlens.core.plan import LayerChoice

    act = layer.activations[0]
    bound = engine.bind_activation(layer, act, activation)
    w = engine.model.weight(layer.weights[0])
    n_out = geo.groups * geo.rows
    bias = (
        np.broadcast_to(np.asarray(engine.model.weight(layer.biases[0]), np.float64).reshape(-1), (n_out,))
        if layer.biases else np.zeros(n_out)
    )  # fmt: skip
    plain_range = engine.activation_range(act, bound)
    plain = fake_quantize(w, bind(fmt, layer.weights[0]))
    found = [_Candidate("plain", geo.to_2d(plain.astype(np.float64)), bias, None, plain_range,
                        "round to nearest")]  # fmt: skip
    skipped: dict[str, str] = {}
    for method in Recovery:
        try:
            rec = engine.recovery.result(layer, fmt, method)
            rng = plain_range
            if method is Recovery.SMOOTH:
                choice = LayerChoice(fmt, activation, False, method)
                rng = engine.recovery.smoothed_range(layer, choice, act, bound)
        except BitlensError as exc:
            skipped[method.value] = str(exc)
            continue
        b = bias if rec.bias is None else np.asarray(rec.bias, np.float64).reshape(-1)
        found.append(_Candidate(method.value, geo.to_2d(rec.weight.astype(np.float64)), b,
                                rec.act_scale, rng, rec.note))  # fmt: skip
    w2 = geo.to_2d(np.asarray(w, np.float64))
    signal = 0.0
    noise = [0.0] * len(found)
    ref = engine._ensure_ref()
    for i in engine.data.calibration:
        for x in feature_pieces(np.asarray(ref[act][i]), geo):
            f = geo.features(x)
            y = np.einsum("ngc,grc->ngr", f, w2) + bias.reshape(geo.groups, geo.rows)
            signal += float(np.sum(y**2))
            for k, c in enumerate(found):
                xs = x if c.act_scale is None else x * c.act_scale
                fq = geo.features(fake_quantize(xs, bound, value_range=c.value_range))
                yq = np.einsum("ngc,grc->ngr", fq, c.weight) + c.bias.reshape(geo.groups, geo.rows)
                noise[k] += float(np.sum((yq - y) ** 2))
    done = {}
    for c, err in zip(found, noise, strict=True):
        db = math.inf if err <= 0.0 else 10.0 * math.log10(max(signal, 1e-300) / err)
        done[c.method] = MethodRow(c.method, db, f"{c.note}; {bound.name} activations")
    for method in ("plain", *(m.value for m in Recovery)):  # the order of the weight-only rows
        yield done.get(method) or MethodRow(method, None, skipped[method])
