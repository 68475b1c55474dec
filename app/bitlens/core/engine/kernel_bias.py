"""Biases as the export stores them for integer kernels: int32 codes at scale s_x * s_w.

ONNX Runtime's QGemm, QLinearConv and MatMulIntegerToFloat add the bias to the int32
accumulator, so the export stores an integer-kernel layer's float bias as int32 at the
accumulator's scale (bitlens.core.export.bias). The rounding to that grid is tiny (half of
s_x * s_w), but the simulation must make it too: on khmersm's transformer the float bias
made the engine's W8A8 graph differ from the exported file by 1e-5 relative at the first
linear layer, which flipped activation codes downstream and reached 0.0022 relative at the
output, both run with no graph optimization. Both sides round with :func:`int32_grid`.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from bitlens.core import targets
from bitlens.core.engine import recovery_nodes
from bitlens.core.engine.bias_fit import fitted_weight
from bitlens.core.engine.rewrite import act_prefix, reader_counts
from bitlens.core.recovery import Recovery
from bitlens.core.weights import bind

if TYPE_CHECKING:
    from bitlens.core.engine import Engine
    from bitlens.core.model.loader import LoadedModel
    from bitlens.core.model.types import Layer, ModelInfo
    from bitlens.core.plan import Plan
    from bitlens.core.quantized import QuantizedWeight
    from bitlens.core.targets import TensorQuantizer

INT32 = np.iinfo(np.int32)


def int32_grid(
    bias: np.ndarray, act_scale: np.float32, weight_scale: np.ndarray, n_out: int
) -> tuple[np.ndarray, np.ndarray] | str:
    """(int32 codes, float32 scale s_x * s_w) of a layer's bias, or why it stays float.

    The codes keep the bias's shape: a vector, or ``[1, ..., 1, n_out]`` (jax2tf writes a
    Dense bias as ``[1, n_out]``: magika's last layer). Kept float, ONNX Runtime fused its
    2-D MatMul + Add into a float Gemm; as int32 codes with per-channel scales on the last
    axis it builds QGemm (measured on 1.31.1)."""
    if bias.size != n_out or bias.shape[-1:] != (n_out,) or bias.dtype != np.float32:
        return f"is not a float32 vector of {n_out}"
    if weight_scale.ndim not in (0, 1) or (weight_scale.ndim == 1 and weight_scale.size != n_out):
        return "weight scales are not per output channel"
    scale = (np.float32(act_scale) * weight_scale).astype(np.float32)
    ratio = np.rint(bias.astype(np.float64) / np.broadcast_to(scale, bias.shape[-1:]))
    if np.any(np.abs(ratio) > INT32.max):
        return "does not fit int32 at scale s_x*s_w"
    return ratio.astype(np.int32), scale


def dequantized(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """What DequantizeLinear computes from int32 codes: float32(code) * scale in float32."""
    return codes.astype(np.float32) * np.broadcast_to(scale, codes.shape[-1:])


def output_axis(layer: Layer, attrs: Mapping[str, object]) -> int:
    """The weight axis of the layer's output channels (the bias's length)."""
    if layer.op_type == "MatMul":
        return len(layer.weights[0].shape) - 1
    if layer.op_type == "Gemm":
        return 0 if attrs.get("transB", 0) else 1
    return 0


def bias_layers(
    info: ModelInfo, graph: onnx.GraphProto, own_inputs: Mapping[str, tuple[str, str]]
) -> dict[str, tuple[str, int]]:
    """Main-graph layers whose bias the default export stores as int32 when the layer runs
    an integer kernel: layer -> (the bias's feed, number of output channels).

    The bias must be the layer's alone or read from the layer's own input (``own_inputs``,
    :func:`rewrite.shared_biases`: one fed value cannot carry two layers' grids), and a
    Gemm's alpha and beta 1 (the exporter keeps the bias float otherwise). The same for
    every plan: computed once (a scan of the graph per layer and plan cost 14 ms of each
    new plan on captcha-whisperer's CRNN, 80 Gemms)."""
    readers = reader_counts(info)
    producer = {o: n for n in graph.node for o in n.output}
    out: dict[str, tuple[str, int]] = {}
    for layer in info.layers:
        node = producer.get(layer.outputs[0]) if layer.outputs else None
        if not layer.biases or node is None:
            continue
        own = own_inputs.get(layer.name)
        feed = own[1] if own is not None else layer.biases[0].name
        if own is None and readers.get(feed, 0) != 1:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            continue
        out[layer.name] = (feed, layer.weights[0].shape[output_axis(layer, attrs)])
    return out


def rounded_bias_layers(
    candidates: Mapping[str, tuple[str, int]], plan: Plan, kernels: Iterable[str]
) -> dict[str, tuple[str, int]]:
    """The integer-kernel layers (``kernels``, the export's) of :func:`bias_layers`
    (``candidates``) whose bias ``plan``'s export stores as int32."""
    if plan.target == targets.TENSORRT:  # TensorRT fuses a float bias (export/layers.py)
        return {}
    return {name: candidates[name] for name in sorted(kernels) if name in candidates}


def created_bias_layers(
    info: ModelInfo, graph: onnx.GraphProto, plan: Plan, kernels: Iterable[str]
) -> dict[str, tuple[str, int]]:
    """The integer-kernel Conv and Gemm layers without a bias that ``plan``'s bias
    correction gives one (fed as ``recovery_nodes.bias_input``): the export appends it as
    the node's bias and stores it as int32 like any other (export/layers.py), so the
    simulation rounds it too. On captcha-whisperer's CRNN (24 Convs without a bias) the
    file differed from the engine by 0.51 at the output while it stayed float here."""
    if plan.target == targets.TENSORRT:
        return {}
    producer = {o: n for n in graph.node for o in n.output}
    out: dict[str, tuple[str, int]] = {}
    for name in kernels:
        layer = info.layer(name)
        choice = plan[name]
        if layer.biases or layer.op_type not in ("Conv", "Gemm") or layer.graph_path:
            continue
        if choice.recovery is not Recovery.BIAS or layer.outputs[0] not in producer:
            continue
        node = producer[layer.outputs[0]]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            continue
        n_out = layer.weights[0].shape[output_axis(layer, attrs)]
        out[name] = (recovery_nodes.bias_input(name), n_out)
    return out


def rounded_feeds(
    info: ModelInfo,
    rounded: Mapping[str, tuple[str, int]],
    feeds: Mapping[str, np.ndarray],
    quantized: Callable[[Layer], QuantizedWeight],
    shared: Collection[str] = (),
) -> tuple[dict[str, np.ndarray], dict[str, QuantizedWeight]]:
    """The bias feeds of the ``rounded`` layers (:func:`rounded_bias_layers`) on the int32
    grid, from the bias and activation scale in ``feeds``; ``quantized(layer)`` gives the
    layer's quantized weight. A bias the export would keep float is fed unchanged. Where the
    bias would not fit int32, the weight's scale is raised first (:func:`bias_fit.fitted_weight`,
    not for a weight other layers read too: ``shared``); those weights come back as the
    second mapping, by weight name."""
    out: dict[str, np.ndarray] = {}
    fitted: dict[str, QuantizedWeight] = {}
    for name, (bias, n_out) in rounded.items():
        layer = info.layer(name)
        act = feeds.get(f"{act_prefix(name, 0)}__scale")
        if len(layer.activations) != 1 or act is None or act.size != 1 or bias not in feeds:
            continue
        s_x = np.float32(act.reshape(()))
        qw = quantized(layer)
        value = np.asarray(feeds[bias])
        if qw.name not in shared:
            fit = fitted_weight(qw, value, s_x, n_out)
            if fit is not None:
                fitted[qw.name] = qw = fit
        grid = int32_grid(value, s_x, np.asarray(qw.q.scale, np.float32), n_out)
        if not isinstance(grid, str):
            out[bias] = dequantized(*grid)
    return out, fitted


class KernelBiases:
    """Mixin of the Engine: the feeds of a plan's run, integer-kernel biases included."""

    info: ModelInfo
    model: LoadedModel

    @cached_property
    def _rounded_biases(self) -> _PerPlan:
        return _PerPlan()

    @cached_property
    def _bias_layers(self) -> dict[str, tuple[str, int]]:
        """:func:`bias_layers` of the model."""
        own = self._bias_inputs  # type: ignore[attr-defined]
        return bias_layers(self.info, self.model.graph_proto.graph, own)

    @cached_property
    def _bias_values(self) -> dict[tuple, tuple[np.ndarray, QuantizedWeight | None]]:
        return {}

    def _rounded(self, plan: Plan) -> dict[str, tuple[str, int]]:
        """:func:`rounded_bias_layers` of ``plan`` (cached per plan)."""
        found = self._rounded_biases.get(plan)
        if found is None:
            # imported here: the export imports the engine (a module-level import is a cycle)
            from bitlens.core.export.kernels import integer_kernel_layers

            placed = self.placement(plan)  # type: ignore[attr-defined]
            kernels = integer_kernel_layers(self.info, plan, placed)
            found = rounded_bias_layers(self._bias_layers, plan, kernels)
            graph = self.model.graph_proto.graph
            found.update(created_bias_layers(self.info, graph, plan, kernels))
            self._rounded_biases.put(plan, found)
        return found

    @cached_property
    def _shared_weights(self) -> frozenset[str]:
        """Weights more than one layer reads: their scale is not raised for one reader's
        bias (the other readers would read it too)."""
        seen: set[str] = set()
        shared: set[str] = set()
        for layer in self.info.layers:
            for w in layer.weights:
                (shared if w.name in seen else seen).add(w.name)
        return frozenset(shared)

    def _plan_feeds(
        self, plan: Plan, placed: Mapping[str, TensorQuantizer], *, int32_bias: bool = True
    ) -> dict[str, np.ndarray]:
        """What a run of ``plan`` feeds besides the sample: weights, quantizer parameters, and
        integer-kernel biases on the int32 grid the export stores them on. The weights whose
        scale the bias needed raised (:func:`bias_fit.fitted_weight`) are fed raised even
        with ``int32_bias`` False: the export stores them so either way."""
        made: dict[tuple[str, str], QuantizedWeight] = {}
        feeds = self._weight_and_param_feeds(plan, placed, made)
        biases, fitted = self._kernel_biases(plan, feeds, made)  # on the weights just made
        del made
        feeds.update((name, qw.values) for name, qw in fitted.items())
        if int32_bias:
            feeds.update(biases)
        return feeds

    def bias_fitted_weights(
        self, plan: Plan, placed: Mapping[str, TensorQuantizer]
    ) -> dict[str, QuantizedWeight]:
        """The weights of ``plan`` whose scale its integer-kernel biases needed raised, by
        name: what the export stores in place of the plain quantized weight."""
        made: dict[tuple[str, str], QuantizedWeight] = {}
        feeds = self._weight_and_param_feeds(plan, placed, made)
        return self._kernel_biases(plan, feeds, made)[1]

    def _weight_and_param_feeds(
        self,
        plan: Plan,
        placed: Mapping[str, TensorQuantizer],
        made: dict[tuple[str, str], QuantizedWeight],
    ) -> dict[str, np.ndarray]:
        """``plan``'s weight values and quantizer parameters, as a run feeds them; ``made``
        gets the weights quantized for them (WeightFeeds._weight_feeds)."""
        engine: Engine = self  # type: ignore[assignment]
        weights = engine._weight_feeds(plan.choices, made)
        return {**weights, **engine._param_feeds(plan.choices, placed)}

    def _kernel_biases(
        self,
        plan: Plan,
        feeds: Mapping[str, np.ndarray],
        made: Mapping[tuple[str, str], QuantizedWeight],
    ) -> tuple[dict[str, np.ndarray], dict[str, QuantizedWeight]]:
        """:func:`rounded_feeds` of ``plan``'s integer-kernel layers, from ``feeds`` and the
        weights ``made`` for them (by weight and bound format; others are quantized again)."""
        rounded = self._rounded(plan)
        if not rounded:
            return {}, {}
        engine: Engine = self  # type: ignore[assignment]
        # kept per (layer, choice, activation scale, float bias): computing them took 1.2-1.5
        # ms of each evaluation on ddddocr's CRNN and khmersm (22 and 13 layers)
        cache = self._bias_values
        biases: dict[str, np.ndarray] = {}
        fitted: dict[str, QuantizedWeight] = {}
        todo: dict[str, tuple[str, int]] = {}
        keys: dict[str, tuple] = {}
        for name, (bias, n_out) in rounded.items():
            if bias not in feeds:  # a Constant node's: not fed, so it stays as the file has it
                continue
            act = feeds.get(f"{act_prefix(name, 0)}__scale")
            keys[name] = key = (
                name, plan[name], None if act is None else act.tobytes(), _digest(feeds[bias])
            )  # fmt: skip
            hit = cache.get(key)
            if hit is None:
                todo[name] = (bias, n_out)
                continue
            biases[bias] = hit[0]
            if hit[1] is not None:
                fitted[hit[1].name] = hit[1]
        if todo:

            def quantized(la: Layer) -> QuantizedWeight:
                w, choice = la.weights[0], plan[la.name]
                got = None
                if choice.weight is not None and choice.recovery is None:
                    got = made.get((w.name, bind(choice.weight, w).name))
                return engine.recovery.quantized(la, w, choice) if got is None else got

            done, fits = rounded_feeds(self.info, todo, feeds, quantized, self._shared_weights)
            if len(cache) > 4096:
                cache.clear()
            for name, (bias, _) in todo.items():
                fit = fits.get(self.info.layer(name).weights[0].name)
                # unchanged where it stays float
                cache[keys[name]] = (done.get(bias, feeds[bias]), fit)
            biases.update(done)
            fitted.update(fits)
        return biases, fitted


def _digest(value: np.ndarray) -> tuple:
    """The float bias's identity in the cache key: the rounded copy is a function of its
    value, which is not the layer's choice alone (a bias shared by several layers is fed
    what bias correction made of it, see weightfeeds). 16 bytes of BLAKE2b of its bytes
    (a bias is at most a few thousand values: microseconds)."""
    v = np.ascontiguousarray(value)
    return (v.dtype.str, v.shape, hashlib.blake2b(v.view(np.uint8), digest_size=16).digest())


class _PerPlan:
    """The last 64 plans' values; the last plan also by identity: every layer's prefix key
    asks for it (engine._choice_key), and hashing a plan sorts its choices."""

    def __init__(self) -> None:
        self._values: OrderedDict[Plan, dict[str, tuple[str, int]]] = OrderedDict()
        self._last: tuple[Plan, dict[str, tuple[str, int]]] | None = None

    def get(self, plan: Plan) -> dict[str, tuple[str, int]] | None:
        if self._last is not None and self._last[0] is plan:
            return self._last[1]
        found = self._values.get(plan)
        if found is not None:
            self._values.move_to_end(plan)
            self._last = (plan, found)
        return found

    def put(self, plan: Plan, value: dict[str, tuple[str, int]]) -> None:
        self._values[plan] = value
        self._last = (plan, value)
        while len(self._values) > 64:
            self._values.popitem(last=False)
