"""The sandbox's method comparison for a layer whose input is quantized too: each method's
output error with the activation quantized as planned, measured on the calibration inputs.

With a static activation format, the layer computes ``Q_a(x) W'`` (plain rounding and the
weight methods) or ``Q_a(x / s) (W s)'`` (SmoothQuant, whose quantizer has its own range),
measured by :func:`.quantized_input.errors`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.errors import BitlensError
from bitlens.core.formats import fake_quantize
from bitlens.core.plan import LayerChoice
from bitlens.core.recovery import Recovery
from bitlens.core.recovery.problem import LayerGeometry
from bitlens.core.recovery.quantized_input import Candidate, calibration_inputs, errors
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


def rows(
    engine: Engine, layer: Layer, fmt: Format, activation: Format, geo: LayerGeometry
) -> Iterator[MethodRow]:
    """Plain rounding and each method, with ``layer``'s input quantized in ``activation``."""
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
    found = {"plain": (Candidate(geo.to_2d(plain.astype(np.float64)), bias, None, plain_range),
                       "round to nearest")}  # fmt: skip
    skipped: dict[str, str] = {}
    for method in Recovery:
        try:
            rec = engine.recovery.result(layer, fmt, method, activation)
            rng = plain_range
            if method is Recovery.SMOOTH:
                choice = LayerChoice(fmt, activation, False, method)
                rng = engine.recovery.smoothed_range(layer, choice, act, bound)
        except BitlensError as exc:
            skipped[method.value] = str(exc)
            continue
        b = bias if rec.bias is None else np.asarray(rec.bias, np.float64).reshape(-1)
        found[method.value] = (Candidate(geo.to_2d(rec.weight.astype(np.float64)), b,
                                         rec.act_scale, rng), rec.note)  # fmt: skip
    signal, noise = errors(geo, calibration_inputs(engine, layer), w, bias, bound,
                           [c for c, _ in found.values()])  # fmt: skip
    done = {}
    for (method, (_, note)), err in zip(found.items(), noise, strict=True):
        db = math.inf if err <= 0.0 else 10.0 * math.log10(max(signal, 1e-300) / err)
        done[method] = MethodRow(method, db, f"{note}; {bound.name} activations")
    for method in ("plain", *(m.value for m in Recovery)):  # the order of the weight-only rows
        yield done.get(method) or MethodRow(method, None, skipped[method])
