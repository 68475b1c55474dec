"""Recovery results for the engine: one per (layer, weight format, method), computed once
from the layer's float inputs on the calibration feeds and read by the engine's feeds,
the exporter and the fidelity check alike. It lives in the engine package because it reads
the engine's graph and names; bitlens.core.recovery.calibrated runs the methods."""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
from onnx import helper

from bitlens.core import metrics
from bitlens.core.engine import recovery_nodes
from bitlens.core.engine.graphs import node_producing
from bitlens.core.engine.rewrite import act_prefix
from bitlens.core.errors import EngineError
from bitlens.core.model.types import Layer, WeightInfo
from bitlens.core.quantized import QuantizedWeight
from bitlens.core.recovery import Recovered, Recovery
from bitlens.core.recovery.calibrated import recover
from bitlens.core.recovery.problem import InputStats, LayerGeometry, geometry
from bitlens.core.recovery.quantized_input import (
    Candidate,
    calibration_inputs,
    errors,
    input_range,
)
from bitlens.core.recovery.smooth import Score
from bitlens.core.shared_weights import stored_readers
from bitlens.core.weights import bind

if TYPE_CHECKING:
    from bitlens.core.engine.engine import Engine
    from bitlens.core.formats import Format
    from bitlens.core.plan import LayerChoice
    from bitlens.core.results import TensorError

STATS_KEPT = 2  # input statistics kept (a 3x3x512 conv's Hessian is 170 MB)


def layer_geometry(engine: Engine, layer: Layer) -> LayerGeometry:
    _, node = node_producing(engine.model.graph_proto.graph, layer.outputs[0])  # nodes only
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    slot = list(node.input).index(layer.weights[0].name)
    return geometry(layer.op_type, layer.weights[0].shape, attrs, slot)


class RecoveryCache:
    """The engine's recovery results, keyed by layer, bound format and method."""

    def __init__(self, engine: Engine) -> None:
        # A proxy, not a reference: the engine keeps this cache, and a cycle would leave a
        # dropped engine (and its ONNX Runtime sessions and threads) to the cyclic collector.
        self._engine = weakref.proxy(engine)
        self._stats: OrderedDict[str, tuple[LayerGeometry, InputStats]] = OrderedDict()
        self._results: dict[tuple, Recovered] = {}
        self._smooth_ranges: dict[tuple[str, str, str, str, str], tuple] = {}
        self._readers: dict[tuple[str, str], str] | None = None  # weight -> stored reader

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

    def result(
        self, layer: Layer, fmt: Format, method: Recovery, activation: Format | None = None
    ) -> Recovered:
        """``method`` on ``layer``'s weight in ``fmt``; ``activation``: the layer's static
        activation format, which SmoothQuant's search quantizes the input in (the other
        methods do not read it)."""
        layer = self._reader(layer)
        w = layer.weights[0]
        bound = bind(fmt, w)
        act = activation if method is Recovery.SMOOTH else None
        # SmoothQuant with an activation: its search calibrates the input as the engine does
        how = None if act is None else (act.name, self._engine.method.value)
        key = (layer.name, bound.name, method, how)
        if key not in self._results:
            geo, stats = self.stats(layer)
            value = self._engine.model.weight(w).astype(np.dtype(w.dtype), copy=False)
            bias = self._engine.model.weight(layer.biases[0]) if layer.biases else None
            try:
                score = None if act is None else self._smooth_score(layer, geo, value, act)
                self._results[key] = recover(method, value, bias, bound, geo, stats, score)
            except EngineError as exc:
                raise EngineError(f"layer {layer.name!r}: {exc}") from None
        return self._results[key]

    def _reader(self, layer: Layer) -> Layer:
        """The layer whose inputs recover ``layer``'s weight: for a weight several layers
        read, the one the file stores it for (shared_weights.stored_readers), so every
        reader simulates the one tensor the export writes. Recovered from each reader's own
        inputs, the engine fed the last reader's weight and the export wrote the first's:
        CapSpot's Siamese VGG16 under a searched plan with GPTQ failed its fidelity check."""
        if self._readers is None:
            found = stored_readers(self._engine.info.layers)
            self._readers = {key: name for key, (name, _) in found.items()}
        w = layer.weights[0]
        name = self._readers.get((w.graph_path, w.name), layer.name)
        return layer if name == layer.name else self._engine.info.layer(name)

    def of(self, layer: Layer, choice: LayerChoice) -> Recovered:
        """The recovery ``choice`` asks for (a weight format and a method)."""
        assert choice.weight is not None and choice.recovery is not None
        static = None if choice.dynamic else choice.activation
        return self.result(layer, choice.weight, choice.recovery, static)

    def weight_error(self, layer: Layer, choice: LayerChoice) -> TensorError:
        """The layer's weight error under ``choice``: of the recovered weight when it asks
        for a method, else the engine's (cached) error of plain rounding."""
        assert choice.weight is not None
        if choice.recovery is None:
            return self._engine.weight_error(layer, choice.weight)
        w = layer.weights[0]
        rec = self.of(layer, choice)
        sums = metrics.ErrorSums()
        sums.add(self._engine.model.weight(w).ravel(), rec.seen_weight.ravel())
        return sums.result()

    def quantized(self, layer: Layer, w: WeightInfo, choice: LayerChoice) -> QuantizedWeight:
        """Weight ``w`` of ``layer`` as ``choice`` quantizes it: the recovered codes and values
        when it asks for a method, else the engine's plain rounding (cached there)."""
        assert choice.weight is not None
        if choice.recovery is None:
            return self._engine.quantized(w, choice.weight)
        rec = self.of(layer, choice)
        return QuantizedWeight(w.name, bind(choice.weight, w), rec.qtensor, rec.weight)

    def feeds(self, layer: Layer, choice: LayerChoice) -> dict[str, np.ndarray]:
        """The weight (and bias) values the engine feeds for ``layer`` under ``choice``."""
        assert choice.weight is not None and choice.recovery is not None
        rec = self.of(layer, choice)
        out = {layer.weights[0].name: rec.weight}
        if rec.bias is not None and layer.biases:
            out[layer.biases[0].name] = rec.bias.astype(np.dtype(layer.biases[0].dtype))
        elif rec.bias is not None:  # created (bias correction on a layer without one)
            out[recovery_nodes.bias_input(layer.name)] = rec.bias.astype(np.float32)
        if rec.act_scale is not None:
            for k in range(len(layer.activations)):
                out[recovery_nodes.scale_input(act_prefix(layer.name, k))] = rec.act_scale
        return out

    def extra_bytes(self, layer: Layer, choice: LayerChoice) -> int:
        """Bytes a layer's recovery stores besides its weight's codes and parameters:
        AWQ's and SmoothQuant's float32 scale per input channel, a created bias."""
        if choice.weight is None or choice.recovery is None:
            return 0
        rec = self.of(layer, choice)
        made = rec.bias if rec.bias is not None and not layer.biases else None
        return sum(4 * a.size for a in (rec.input_scale, rec.act_scale, made) if a is not None)

    def smoothed_range(self, layer: Layer, choice: LayerChoice, act: str, fmt: Format) -> tuple:
        """Calibrated range of SmoothQuant's scaled activation ``act * act_scale`` (what the
        layer's quantizer sees), from the float calibration values, in bound format ``fmt``."""
        assert choice.weight is not None and choice.recovery is Recovery.SMOOTH
        eng = self._engine
        key = (layer.name, act, fmt.name, choice.weight.name, eng.method.value)
        if key not in self._smooth_ranges:
            rec = self.of(layer, choice)
            assert rec.act_scale is not None
            values = [x * rec.act_scale for x in calibration_inputs(eng, layer)]
            name = f"{act} (smoothed for {layer.name})"
            self._smooth_ranges[key] = input_range(values, name, fmt, eng.method)
        return self._smooth_ranges[key]

    def _smooth_score(self, layer: Layer, geo: LayerGeometry, w: np.ndarray,
                      activation: Format) -> Score:
        """SmoothQuant's search criterion with ``activation`` quantizing the scaled input."""
        eng = self._engine
        act = layer.activations[0]
        bound = eng.bind_activation(layer, act, activation)
        inputs = calibration_inputs(eng, layer)
        zero = np.zeros(geo.groups * geo.rows)

        def score(multiplier: np.ndarray, weight: np.ndarray) -> float:
            rng = input_range([x * multiplier for x in inputs], act, bound, eng.method)
            cand = Candidate(geo.to_2d(weight.astype(np.float64)), zero, multiplier, rng)
            return errors(geo, inputs, w, zero, bound, [cand])[1][0]

        return score
