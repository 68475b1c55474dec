"""Each recovery method's output error on one layer next to plain rounding (the sandbox).

The error is the layer's own output error on its calibration inputs, exact from the input
statistics: with ``d = W' - W`` and ``e = b' - b`` per output row,
``sum ||d x + e||^2 = d H d^T + 2 e (d . sum x) + n e^2``, against the signal
``sum ||W x + b||^2`` written the same way (:mod:`.problem`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.errors import BitlensError
from bitlens.core.formats import fake_quantize
from bitlens.core.recovery import Recovery, with_activation
from bitlens.core.recovery.problem import InputStats, LayerGeometry
from bitlens.core.recovery.with_activation import MethodRow
from bitlens.core.weights import bind

if TYPE_CHECKING:
    from bitlens.core.engine.engine import Engine
    from bitlens.core.formats import Format
    from bitlens.core.model.types import Layer


RECOVERY_DEFAULT_FORMAT = "int4 sym ch"  # compared when the layer's weights are float


def _power(geo: LayerGeometry, st: InputStats, d: np.ndarray, e: np.ndarray) -> float:
    """``sum over calibration rows of ||d x + e||^2`` (d weight-shaped, e per output)."""
    d2 = geo.to_2d(np.asarray(d, np.float64))
    e2 = np.asarray(e, np.float64).reshape(geo.groups, geo.rows)
    quad = np.einsum("grc,grc->", d2 @ st.hessian, d2)
    cross = 2.0 * np.einsum("gr,grc,gc->", e2, d2, st.total)
    return float(quad + cross + st.count * np.sum(e2**2))


def method_rows(
    engine: Engine, layer: Layer, fmt: Format, activation: Format | None = None
) -> tuple[MethodRow, ...]:
    """Plain rounding and every recovery method of ``layer`` in ``fmt``; with a (static)
    ``activation`` format, each with the layer's input quantized as planned
    (:mod:`.with_activation`), which is where SmoothQuant acts."""
    return tuple(iter_method_rows(engine, layer, fmt, activation))


def iter_method_rows(
    engine: Engine, layer: Layer, fmt: Format, activation: Format | None = None
) -> Iterator[MethodRow]:
    """:func:`method_rows` one row at a time (a worker can stop between methods)."""
    try:
        geo, st = engine.recovery.stats(layer)
    except BitlensError as exc:
        yield MethodRow("plain", None, str(exc))
        return
    if activation is not None:
        yield from with_activation.rows(engine, layer, fmt, activation, geo)
        return
    w = layer.weights[0]
    value = engine.model.weight(w).astype(np.float64)
    n_out = geo.groups * geo.rows
    bias = (
        np.asarray(engine.model.weight(layer.biases[0]), np.float64).reshape(-1)
        if layer.biases else np.zeros(n_out)
    )  # fmt: skip
    if bias.size != n_out:
        bias = np.broadcast_to(bias, (n_out,))
    signal = _power(geo, st, value, bias)

    def row(name: str, new_w: np.ndarray, new_b: np.ndarray | None, note: str) -> MethodRow:
        e = np.zeros(n_out) if new_b is None else new_b.reshape(-1) - bias
        err = _power(geo, st, new_w.astype(np.float64) - value, e)
        db = math.inf if err <= 0.0 else 10.0 * math.log10(max(signal, 1e-300) / err)
        return MethodRow(name, db, note)

    plain = fake_quantize(engine.model.weight(w), bind(fmt, w))
    yield row("plain", plain, None, "round to nearest")
    for method in Recovery:
        try:
            rec = engine.recovery.result(layer, fmt, method)
        except BitlensError as exc:
            yield MethodRow(method.value, None, str(exc))
            continue
        yield row(method.value, rec.seen_weight, rec.bias, rec.note)
