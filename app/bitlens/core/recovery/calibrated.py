"""Recovery results for the engine: one per (layer, weight format, method), computed once
from the layer's float inputs on the calibration feeds and read by the engine's feeds,
the exporter and the fidelity check alike."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
from onnx import helper

from bitlens.core import metrics
from bitlens.core.engine.graphs import node_producing
from bitlens.core.errors import EngineError
from bitlens.core.model.types import Layer, WeightInfo
from bitlens.core.quantized import QuantizedWeight
from bitlens.core.recovery import Recovered, Recovery
from bitlens.core.recovery.awq import awq
from bitlens.core.recovery.bias import bias_correction
from bitlens.core.recovery.clip import clip_search
from bitlens.core.recovery.gptq import gptq
from bitlens.core.recovery.problem import InputStats, LayerGeometry, geometry
from bitlens.core.weights import bind

if TYPE_CHECKING:
    from bitlens.core.engine.engine import Engine
    from bitlens.core.formats import Format
    from bitlens.core.plan import LayerChoice
    from bitlens.core.results import TensorError

STATS_KEPT = 2  # input statistics kept (a 3x3x512 conv's Hessian is 170 MB)


def layer_geometry(engine: Engine, layer: Layer) -> LayerGeometry:
    _, node = node_producing(engine.model.proto.graph, layer.outputs[0])
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    slot = list(node.input).index(layer.weights[0].name)
    return geometry(layer.op_type, layer.weights[0].shape, attrs, slot)


def recover(
    method: Recovery, w: np.ndarray, bias: np.ndarray | None, fmt: Format,
    geo: LayerGeometry, stats: InputStats,
) -> Recovered:
    """Run one method; ``fmt`` bound to the weight's axes."""
    if method is Recovery.GPTQ:
        return gptq(w, fmt, geo, stats)
    if method is Recovery.BIAS:
        return bias_correction(w, bias, fmt, geo, stats)
    if method is Recovery.AWQ:
        return awq(w, fmt, geo, stats)
    return clip_search(w, fmt, geo, stats)


class RecoveryCache:
    """The engine's recovery results, keyed by layer, bound format and method."""

    def __init__(self, engine: Engine) -> None:
        # A proxy, not a reference: the engine keeps this cache, and a cycle would leave a
        # dropped engine (and its ONNX Runtime sessions and threads) to the cyclic collector.
        self._engine = weakref.proxy(engine)
        self._stats: OrderedDict[str, tuple[LayerGeometry, InputStats]] = OrderedDict()
        self._results: dict[tuple[str, str, Recovery], Recovered] = {}

    def stats(self, layer: Layer) -> tuple[LayerGeometry, InputStats]:
        """The layer's geometry and input statistics on the calibration feeds."""
        if layer.name in self._stats:
            self._stats.move_to_end(layer.name)
            return self._stats[layer.name]
        eng = self._engine
        if eng.data is None:
            raise EngineError("recovery methods need calibration data: give input data first")
        geo = layer_geometry(eng, layer)
        ref = eng._ensure_ref()
        values = ref[layer.inputs[0]]  # the data input (slot 0) of Conv, Gemm and MatMul
        stats = InputStats.of(geo, (values[i] for i in eng.data.calibration))
        self._stats[layer.name] = (geo, stats)
        while len(self._stats) > STATS_KEPT:
            self._stats.popitem(last=False)
        return geo, stats

    def result(self, layer: Layer, fmt: Format, method: Recovery) -> Recovered:
        w = layer.weights[0]
        bound = bind(fmt, w)
        key = (layer.name, bound.name, method)
        if key not in self._results:
            geo, stats = self.stats(layer)
            value = self._engine.model.weight(w).astype(np.dtype(w.dtype), copy=False)
            bias = self._engine.model.weight(layer.biases[0]) if layer.biases else None
            try:
                self._results[key] = recover(method, value, bias, bound, geo, stats)
            except EngineError as exc:
                raise EngineError(f"layer {layer.name!r}: {exc}") from None
        return self._results[key]

    def weight_error(self, layer: Layer, choice: LayerChoice) -> TensorError:
        """The layer's weight error under ``choice``: of the recovered weight when it asks
        for a method, else the engine's (cached) error of plain rounding."""
        assert choice.weight is not None
        if choice.recovery is None:
            return self._engine.weight_error(layer, choice.weight)
        w = layer.weights[0]
        rec = self.result(layer, choice.weight, choice.recovery)
        sums = metrics.ErrorSums()
        sums.add(self._engine.model.weight(w).ravel(), rec.weight.ravel())
        return sums.result()

    def quantized(self, layer: Layer, w: WeightInfo, choice: LayerChoice) -> QuantizedWeight:
        """Weight ``w`` of ``layer`` as ``choice`` quantizes it: the recovered codes and values
        when it asks for a method, else the engine's plain rounding (cached there)."""
        assert choice.weight is not None
        if choice.recovery is None:
            return self._engine.quantized(w, choice.weight)
        rec = self.result(layer, choice.weight, choice.recovery)
        return QuantizedWeight(w.name, bind(choice.weight, w), rec.qtensor, rec.weight)

    def feeds(self, layer: Layer, choice: LayerChoice) -> dict[str, np.ndarray]:
        """The weight (and bias) values the engine feeds for ``layer`` under ``choice``."""
        assert choice.weight is not None and choice.recovery is not None
        rec = self.result(layer, choice.weight, choice.recovery)
        out = {layer.weights[0].name: rec.weight}
        if rec.bias is not None:
            out[layer.biases[0].name] = rec.bias.astype(np.dtype(layer.biases[0].dtype))
        return out
