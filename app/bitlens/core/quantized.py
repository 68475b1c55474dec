"""A plan applied to a model, computed once: every quantized weight and quantizer parameter.

:class:`QuantizedModel` holds, for one plan, each planned weight's codes and
parameters (a :class:`~bitlens.core.formats.QTensor`, what the export stores)
next to the values they decode to (what the engine feeds), and each activation
quantizer's bound format and calibrated range. The engine computes each
weight once (:meth:`Engine.quantized`, cached) through :func:`quantize_weight`;
:func:`quantize_model` collects those same objects for a plan, and the
exporter and the fidelity check read them instead of quantizing again, so
what is exported is by construction what was evaluated.

:func:`quantize_weight` is the one place a planned weight is turned into
codes: a method that changes a layer's quantized weights (error compensation,
clipping search) hooks in there so the engine, the export and the check all
see its result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from bitlens.core.errors import ExportError
from bitlens.core.formats import Format, QTensor, dequantize, quantize
from bitlens.core.model.types import WeightInfo
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery import Recovery
from bitlens.core.targets import TensorQuantizer

if TYPE_CHECKING:
    from bitlens.core.engine import Engine
    from bitlens.core.recovery import Recovered


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """One weight in its bound format: codes and parameters, and the values they decode to."""

    name: str
    fmt: Format  # bound to the weight's axis
    q: QTensor
    values: np.ndarray  # dequantize(q) in the weight's own dtype: what the engine feeds

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + self.q.codes.nbytes)


def quantize_weight(
    value: np.ndarray, w: WeightInfo, fmt: Format, fit: object | None = None
) -> QuantizedWeight:
    """``value`` (weight ``w``) in the bound format ``fmt``; the engine's one entry point.
    ``fit``: what an earlier quantize of this weight in ``fmt`` fitted (formats.fitted)."""
    q = quantize(value, fmt, what=f"weight {w.name!r}", fit=fit)
    values = dequantize(q).astype(np.dtype(w.dtype), copy=False)
    return QuantizedWeight(w.name, fmt, q, values)


@dataclass(frozen=True)
class ActivationQuantizer:
    """A layer's quantizer on one of its inputs: bound format and calibrated range."""

    layer: str
    tensor: str
    fmt: Format
    value_range: tuple[Any, Any] | None  # None: dynamic (from each input at run time)


@dataclass(frozen=True, eq=False)
class QuantizedModel:
    """Everything a plan quantizes, computed once (see :func:`quantize_model`)."""

    plan: Plan
    weights: Mapping[str, QuantizedWeight]
    activations: Mapping[tuple[str, str], ActivationQuantizer]
    placed: Mapping[str, TensorQuantizer] = field(default_factory=dict)
    target_ranges: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    # layer -> its recovery result (bitlens.core.recovery), whose weight is in ``weights``;
    # the export also writes its bias and AWQ's multiply from here
    recovered: Mapping[str, Recovered] = field(default_factory=dict)

    def weight(self, name: str) -> QuantizedWeight:
        try:
            return self.weights[name]
        except KeyError:
            raise ExportError(f"weight {name!r} is not quantized by this plan") from None

    def activation(self, layer: str, tensor: str) -> ActivationQuantizer:
        try:
            return self.activations[(layer, tensor)]
        except KeyError:
            raise ExportError(f"layer {layer!r} has no quantizer on {tensor!r}") from None

    def feeds(self) -> dict[str, np.ndarray]:
        """Quantized weight values by name (what the engine feeds for this plan)."""
        return {name: qw.values for name, qw in self.weights.items()}


def smoothed(choice: LayerChoice) -> bool:
    """Whether the layer's activation is scaled (SmoothQuant) before its quantizer, which
    then quantizes a tensor of its own, not one a deployment target already quantizes."""
    return choice.recovery is Recovery.SMOOTH


def quantize_model(engine: Engine, plan: Plan) -> QuantizedModel:
    """The plan's weights (the engine's own cached objects) and calibrated quantizer ranges.

    Weights shared by layers with different formats are refused here, before any work.
    """
    if plan.info is not engine.info:
        raise ExportError("the plan was made for a different model")
    weights: dict[str, QuantizedWeight] = {}
    acts: dict[tuple[str, str], ActivationQuantizer] = {}
    placed = engine.placement(plan)
    # first: the target's tensor ranges (this also gathers their statistics)
    ranges = engine.target_ranges(placed)
    recovered: dict[str, Recovered] = {}
    for name, choice in plan.choices.items():
        layer = engine.info.layer(name)
        if choice.weight is not None and choice.recovery is not None:
            recovered[name] = engine.recovery.of(layer, choice)
        for w in layer.weights if choice.weight is not None else ():
            qw = engine.recovery.quantized(layer, w, choice)
            prev = weights.setdefault(w.name, qw)
            if prev.fmt != qw.fmt:
                raise ExportError(
                    f"weight {w.name!r} is shared by several layers with different formats "
                    f"({prev.fmt.name} and {qw.fmt.name}); give them the same format"
                )
        for act in layer.activations if choice.activation is not None else ():
            fmt = engine.bind_activation(layer, act, choice.activation)
            shared = placed.get(act)
            if choice.dynamic:
                rng = None
            elif shared is not None and shared.format == fmt and not smoothed(choice):
                rng = ranges[act]  # the layer reads the target's
            else:
                rng = engine.planned_range(layer, choice, act, fmt, placed)
            acts[(name, act)] = ActivationQuantizer(name, act, fmt, rng)
    # integer-kernel weights whose scale their int32 bias needed raised, as the engine feeds
    weights.update(engine.bias_fitted_weights(plan, placed))
    return QuantizedModel(
        plan, MappingProxyType(weights), MappingProxyType(acts), MappingProxyType(dict(placed)),
        MappingProxyType(ranges), MappingProxyType(recovered),
    )  # fmt: skip
