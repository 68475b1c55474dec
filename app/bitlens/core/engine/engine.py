"""The evaluation engine: a plan in, exact per-layer and output errors out.

One long-lived ONNX Runtime session per activation-quantizer *structure*
(which layers have an integer, fp16, fp8... quantizer) runs the model with
weights and quantizer parameters fed as inputs. Changing a layer's weight
format or activation width is then one numpy quantization (cached) and one
run; only switching a layer between quantizer kinds builds a new session
(also cached). The float reference (outputs, every layer output, every
activation feeding a layer) is computed once, on the same kind of session,
so a float plan reproduces it exactly.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from bitlens.core import metrics, targets
from bitlens.core.data import Dataset, batch_of
from bitlens.core.engine import quantizers, rewrite, suffix, target_stats
from bitlens.core.engine.calibration import (
    ActivationStats,
    CalibrationMethod,
    activation_range,
    channel_stats,
    method_of,
    needs_sample,
)
from bitlens.core.engine.graphs import node_producing
from bitlens.core.engine.native_memory import limit_heap_growth
from bitlens.core.engine.session import actual_providers, make_session
from bitlens.core.engine.store import ActivationStore, RefView, default_budget
from bitlens.core.errors import EngineError
from bitlens.core.formats import Format, Granularity, parse_format
from bitlens.core.model import tensors
from bitlens.core.model.types import Layer, WeightInfo
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.quantized import QuantizedWeight, quantize_weight
from bitlens.core.recovery.calibrated import RecoveryCache
from bitlens.core.results import (
    Evaluation,
    LayerResult,
    OutputResult,
    Progress,
    SweepEntry,
    TensorError,
)
from bitlens.core.usermetric import concat
from bitlens.core.weights import bind, weight_bytes_after

if TYPE_CHECKING:
    from bitlens.core.model.loader import LoadedModel

DIVERGENCE_DB = 20.0  # a sample "diverges" at the first layer whose output SQNR drops below this
WEIGHT_CACHE_BYTES = 512 << 20  # at most; and at most twice the model's weights (see below)
ACC_CACHE_ENTRIES = 50_000
BULK_LOCAL_MIN = 4  # layers whose local error is due at once: from here, one graph for all
SUFFIX_SESSIONS = 4
SWEEP_WORKERS = 2  # concurrent sweep runs (ONNX Runtime sessions run thread-safely)
RUN_WORKERS = 2  # concurrent runs over the feeds in prepare and evaluate (see Engine._runs)  # suffix sessions kept (each holds its own activation arena)


class Engine:
    """Evaluate plans for one model on one dataset. Not thread-safe: use from one worker."""

    def __init__(
        self,
        model: LoadedModel,
        data: Dataset | None,
        *,
        device: str = "auto",
        memory_budget: int | None = None,
    ):
        """``data`` None: weights only (errors, sizes, the sandbox) until the inputs are
        known. ``memory_budget``: bytes of float reference activations kept in memory (default:
        store.default_budget()); the rest goes to a memory-mapped scratch file in a temporary
        folder (ActivationStore)."""
        limit_heap_growth()
        self.model = model
        self.info = model.info
        self.data = data
        self.device = device
        self._sessions: OrderedDict[tuple, tuple[rewrite.SimGraph, object]] = OrderedDict()
        # Sessions kept (one per quantizer structure). Each holds about the model's size; a
        # job that visits many structures (the plan search) lowers this for its duration.
        self.max_sessions = 4
        self._local_sessions: dict[tuple[str, str | None], object] = {}  # (layer, kind)
        # layer -> (session or None when the first output does not depend on it, boundary)
        self._suffixes: OrderedDict[str, tuple[object | None, tuple[str, ...]]] = OrderedDict()
        self._wcache: OrderedDict[tuple[str, str], QuantizedWeight] = OrderedDict()
        self._wcache_bytes = 0
        self._executor: ThreadPoolExecutor | None = None
        self._werr: dict[tuple[str, str], TensorError] = {}  # (layer, format) -> weight error
        # (layer, choice, calibration method) -> local error: a layer's local error depends
        # only on its own choice, so unchanged layers are not re-run.
        self._local: dict[tuple[str, LayerChoice, str], TensorError] = {}
        # (layer, choices up to it, calibration) -> accumulated error and per-sample SQNR
        self._acc: OrderedDict[tuple[str, int, str], tuple[TensorError, tuple[float, ...]]] = (
            OrderedDict()
        )
        # Float reference values per (tensor, feed): layer and model outputs of the evaluation
        # feeds, layer inputs of every feed. None until prepare() ran.
        self._store = ActivationStore(default_budget() if memory_budget is None else memory_budget)
        self._ref: RefView | None = None
        self._stats: dict[str, ActivationStats] = {}
        # (activation, format, method) -> (lo, hi): floats, or arrays for per-channel formats
        self._ranges: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.method = CalibrationMethod.MINMAX
        self._placements: OrderedDict[Plan, dict[str, targets.TensorQuantizer]] = OrderedDict()
        self._providers: tuple[str, ...] = ()
        self._float_feeds: dict[str, np.ndarray] | None = None
        self._check_data()

    # -- setup ----------------------------------------------------------------------
    def _check_data(self) -> None:
        names = {t.name for t in self.info.inputs}
        for i, feed in enumerate(self.data.samples if self.data is not None else ()):
            if set(feed) != names:
                raise EngineError(
                    f"data sample {i} feeds {sorted(feed)}, the model needs {sorted(names)}"
                )

    @property
    def providers(self) -> tuple[str, ...]:
        """Providers the sessions actually run on (after the first session is built)."""
        if not self._providers:
            self._session_for({})
        return self._providers

    def _kinds(self, plan: Plan | None) -> dict[str, str | None]:
        if plan is None:
            return {}
        return {
            name: quantizers.kind_of(choice.activation, choice.dynamic)
            for name, choice in plan.choices.items()
            if choice.activation is not None
        }

    def placement(self, plan: Plan) -> dict[str, targets.TensorQuantizer]:
        """The tensors ``plan.target`` quantizes besides the layer inputs (cached per plan)."""
        if plan in self._placements:
            self._placements.move_to_end(plan)
            return self._placements[plan]
        found = targets.placement(plan, self._attribute)
        self._placements[plan] = found
        while len(self._placements) > 64:
            self._placements.popitem(last=False)
        return found

    def _session_for(self, kinds: Mapping[str, str | None], tensors: Sequence[str] = ()):
        key = (tuple(sorted((k, v) for k, v in kinds.items() if v)), tuple(tensors))
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return self._sessions[key]
        sim = rewrite.build_sim(self.model.proto, self.info, dict(key[0]), key[1])
        sess = make_session(sim.model, self.device)
        self._providers = actual_providers(sess)
        self._sessions[key] = (sim, sess)
        while len(self._sessions) > max(1, self.max_sessions):
            self._sessions.popitem(last=False)
        return self._sessions[key]

    def _local_session(self, layer: str, kind: str | None):
        """The session computing ``layer`` alone from float inputs (built once per kind)."""
        key = (layer, kind)
        if key not in self._local_sessions:
            types = self._ensure_ref().types
            proto = rewrite.build_local(
                self.model.proto, self.info, {layer: kind}, types, self._constant, [layer]
            )
            self._local_sessions[key] = make_session(proto, self.device, arena=False)
        return self._local_sessions[key]

    def _constant(self, name: str) -> np.ndarray:
        """A main-graph constant (bias, shape...) in its stored type, for the local graphs."""
        g = self.model.proto.graph
        for t in g.initializer:
            if t.name == name:
                return tensors.to_numpy(t)
        _, node = node_producing(g, name)
        return tensors.constant_value(node)

    def _float_weights(self) -> dict[str, np.ndarray]:
        if self._float_feeds is None:
            # weight() widens fp16/bf16 to float32; the session's inputs keep the stored type.
            self._float_feeds = {
                w.name: self.model.weight(w).astype(np.dtype(w.dtype), copy=False)
                for layer in self.info.layers
                for w in rewrite.fed_constants(layer)
            }
        return dict(self._float_feeds)

    # -- float reference & calibration ------------------------------------------------
    def prepare(self) -> Iterator[Progress]:
        """Run the float model once over every sample, keeping what the metrics need: the
        inputs of every layer (calibration, local errors) for every feed, layer and model
        outputs for the evaluation feeds. One feed's values are in flight at a time."""
        if self._ref is not None:
            return
        if self.data is None:
            raise EngineError("no input data yet: give the input sizes or data first")
        sim, sess = self._session_for({})
        # Topological-ish order, so a NaN is reported where it first appears.
        fetch = list(
            dict.fromkeys([*sim.activations, *sim.layer_outputs.values(), *self._output_names])
        )
        every_feed = set(sim.activations)
        weights = self._float_weights()
        evaluation = set(self.data.evaluation)
        store = self._store
        types: dict[str, tuple[np.dtype, int]] = {}
        n = len(self.data.samples)
        samples = self.data.samples
        for i, outs in self._runs(
            sess, fetch, lambda i: {**samples[i], **weights}, range(len(samples))
        ):
            for name, value in zip(fetch, outs, strict=True):
                if value.dtype.kind == "f" and not np.isfinite(value).all():
                    raise EngineError(
                        f"the float model computes NaN or infinite values in {name!r} on data "
                        f"sample {i}; errors against it would be meaningless"
                    )
                types.setdefault(name, (value.dtype, value.ndim))
                if (i in evaluation or name in every_feed) and (name, i) not in store:
                    store.put(name, i, value)
            del outs
            yield Progress(i + 1, n, f"float reference: sample {i + 1} of {n}")
        inputs = {t.name for t in self.info.inputs}
        for name in inputs:
            first = np.asarray(self.data.samples[0][name])
            types.setdefault(name, (first.dtype, first.ndim))
        self._ref = RefView(store, self.data, inputs, types)

    @property
    def memory_budget(self) -> int:
        """Bytes of float reference activations kept in memory (the rest is spilled)."""
        return self._store.budget

    def memory_use(self) -> dict[str, int]:
        """Reference activations held: ``in_memory`` and ``spilled`` bytes, and the budget."""
        return {
            "budget": self._store.budget,
            "in_memory": self._store.ram_bytes,
            "spilled": self._store.spilled_bytes,
        }

    def close(self) -> None:
        """Release sessions, caches and the scratch file; the engine cannot be used after."""
        self._sessions.clear()
        self._local_sessions.clear()
        self._suffixes.clear()
        self._wcache.clear()
        self._wcache_bytes = 0
        self._float_feeds = None
        self._store.close()
        self._ref = None
        if self._executor is not None:
            self._executor.shutdown()
            self._executor = None

    def _ensure_ref(self) -> RefView:
        for _ in self.prepare():
            pass
        assert self._ref is not None
        return self._ref

    def calibrate(self, method: str = "minmax") -> Iterator[Progress]:
        """Gather activation statistics on the calibration samples (progress per activation)."""
        yield from self.prepare()
        ref = self._ensure_ref()
        self.method = method_of(method)
        self._ranges.clear()
        self._local.clear()
        self._acc.clear()
        acts = list(
            dict.fromkeys(a for layer in rewrite.main_layers(self.info) for a in layer.activations)
        )
        for i, a in enumerate(acts):
            if a not in self._stats:
                values = [ref[a][j] for j in self.data.calibration]
                if np.asarray(values[0]).dtype.kind == "f":
                    sample = self.method is not CalibrationMethod.MINMAX
                    self._stats[a] = ActivationStats.of(values, a, sample=sample)
            yield Progress(i + 1, len(acts), f"calibrating {a}")

    def target_range(self, q: targets.TensorQuantizer) -> tuple[Any, Any]:
        """Calibrated (lo, hi) of a deployment target's tensor quantizer."""
        self._ensure_stats([q.range_of])
        return self.activation_range(q.range_of, q.format)

    def _ensure_stats(self, names: Sequence[str]) -> None:
        """Calibration statistics of tensors no layer reads (a target's extra quantizers):
        one float run over the calibration samples fetching just them."""
        missing = [n for n in dict.fromkeys(names) if n not in self._stats]
        if not missing:
            return
        ref = self._ensure_ref()
        rest: list[str] = []
        for n in missing:
            try:  # the float reference keeps layer outputs, within its memory budget
                values = [ref[n][j] for j in self.data.calibration]
            except (KeyError, EngineError):
                rest.append(n)
                continue
            if np.asarray(values[0]).dtype.kind == "f":
                self._stats[n] = ActivationStats.of(values, n)
        if not rest:
            return
        sim = rewrite.build_sim(self.model.proto, self.info, {}, expose=rest)
        weights = self._float_weights()
        feeds = ({**self.data.samples[j], **weights} for j in self.data.calibration)
        self._stats.update(
            target_stats.collect(
                sim.model, lambda m: make_session(m, self.device), self._run, rest, feeds
            )
        )

    def activation_axis(self, layer: Layer, act: str) -> int:
        """The channel axis of an activation: 1 for convolutions (NCHW), else the last axis."""
        if layer.op_type in ("Conv", "ConvTranspose"):
            return 1
        return max(self._ensure_ref().types[act][1] - 1, 0)

    def bind_activation(self, layer: Layer, act: str, fmt: Format) -> Format:
        """``fmt`` with a per-channel activation's axis resolved for this layer."""
        if fmt.granularity is Granularity.TENSOR or fmt.axis is not None:
            return fmt
        return fmt.with_axis(self.activation_axis(layer, act))

    def activation_range(self, act: str, fmt: Format) -> tuple[Any, Any]:
        """Calibrated (lo, hi): floats per tensor; for a per-channel format (axis bound, see
        :meth:`bind_activation`) arrays shaped to broadcast against the activation."""
        key = (act, fmt.name, self.method.value)
        if key not in self._ranges:
            if act not in self._stats:
                for _ in self.calibrate(self.method.value):
                    pass
            if act not in self._stats:
                raise EngineError(
                    f"activation {act!r} is not a float tensor; it cannot be quantized"
                )
            if fmt.granularity is Granularity.TENSOR:
                stats = self._stats[act]
                if stats.sample is None and needs_sample(fmt, self.method):
                    ref = self._ensure_ref()
                    stats = ActivationStats.of([ref[act][j] for j in self.data.calibration], act)
                    self._stats[act] = stats
                self._ranges[key] = activation_range(stats, fmt, self.method)
            else:
                self._ranges[key] = self._channel_range(act, fmt)
        return self._ranges[key]

    def layer_range(
        self, act: str, fmt: Format, placed: Mapping[str, targets.TensorQuantizer]
    ) -> tuple[Any, Any]:
        """A layer's calibrated range for ``act``; where the target already quantizes ``act``
        in the same format, that quantizer's range, so the layer's own is an exact identity
        (and the export can leave it out)."""
        q = placed.get(act)
        if q is not None and q.format == fmt:
            return self.activation_range(q.range_of, fmt)
        return self.activation_range(act, fmt)

    def _channel_range(self, act: str, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
        if fmt.axis is None:
            raise EngineError(f"per-channel activation format {fmt.name} needs its axis bound")
        ref = self._ensure_ref()
        values = [ref[act][j] for j in self.data.calibration]
        rank = ref.types[act][1]
        if fmt.axis >= rank:
            raise EngineError(
                f"activation {act!r} has rank {rank}; {fmt.name} names axis {fmt.axis}"
            )
        per_tensor = fmt.replace(granularity=Granularity.TENSOR, axis=None)
        ranges = [
            activation_range(st, per_tensor, self.method)
            for st in channel_stats(values, act, fmt.axis)
        ]
        shape = [1] * rank
        shape[fmt.axis] = len(ranges)
        lo = np.array([r[0] for r in ranges], np.float64).reshape(shape)
        hi = np.array([r[1] for r in ranges], np.float64).reshape(shape)
        return lo, hi

    # -- weights ---------------------------------------------------------------------
    @cached_property
    def _wcache_limit(self) -> int:
        """Room for the weights of a plan and of the next one, not for every format tried."""
        return min(WEIGHT_CACHE_BYTES, max(2 * sum(la.nbytes for la in self.info.layers), 64 << 20))

    def quantized_weight(self, w: WeightInfo, fmt: Format, *, keep: bool = True) -> np.ndarray:
        """``w`` quantized in ``fmt`` (stored dtype); cached unless ``keep`` is False (the
        sweep uses each once, and would otherwise push the plan's weights out)."""
        return self.quantized(w, fmt, keep=keep).values

    def quantized(self, w: WeightInfo, fmt: Format, *, keep: bool = True) -> QuantizedWeight:
        """``w`` in ``fmt``: codes, parameters and values (what the export stores and reads)."""
        fmt = bind(fmt, w)
        key = (w.name, fmt.name)
        if key in self._wcache:
            self._wcache.move_to_end(key)
            return self._wcache[key]
        q = quantize_weight(self.model.weight(w), w, fmt)
        if not keep:
            return q
        self._wcache[key] = q
        self._wcache_bytes += q.nbytes
        while self._wcache_bytes > self._wcache_limit and len(self._wcache) > 1:
            _, old = self._wcache.popitem(last=False)
            self._wcache_bytes -= old.nbytes
        return q

    @cached_property
    def recovery(self) -> RecoveryCache:
        """Recovery results (GPTQ, bias correction...) computed once per layer and format."""
        return RecoveryCache(self)

    def weight_error(self, layer: Layer, fmt: Format) -> TensorError:
        """Error of the layer's weights (all of them, concatenated) in ``fmt``."""
        key = (layer.name, fmt.name)
        if key not in self._werr:
            self._werr[key] = self._weight_error(layer, fmt)
        return self._werr[key]

    def _weight_error(self, layer: Layer, fmt: Format) -> TensorError:
        sums = metrics.ErrorSums()  # over the weights in turn, as if concatenated
        for w in layer.weights:
            sums.add(self.model.weight(w).ravel(), self.quantized_weight(w, fmt).ravel())
        return sums.result()

    def _weight_feeds(self, plan: Plan | Mapping[str, LayerChoice]) -> dict[str, np.ndarray]:
        feeds = self._float_weights()
        for name, choice in plan.items() if isinstance(plan, Mapping) else ():
            if choice.weight is None:
                continue
            if choice.recovery is not None:
                feeds.update(self.recovery.feeds(self.info.layer(name), choice))
                continue
            for w in self.info.layer(name).weights:
                feeds[w.name] = self.quantized_weight(w, choice.weight)
        return feeds

    def _param_feeds(
        self,
        choices: Mapping[str, LayerChoice],
        placed: Mapping[str, targets.TensorQuantizer] | None = None,
    ) -> dict[str, np.ndarray]:
        placed = placed or {}
        self._ensure_stats([q.range_of for q in placed.values()])
        feeds: dict[str, np.ndarray] = {}
        for t, q in placed.items():
            lo, hi = self.target_range(q)
            feeds.update(quantizers.param_feeds("int", rewrite.extra_prefix(t), q.format, lo, hi))
        for name, choice in choices.items():
            fmt = choice.activation
            if fmt is None:
                continue
            kind = quantizers.kind_of(fmt, choice.dynamic)
            assert kind is not None
            layer = self.info.layer(name)
            for k, act in enumerate(layer.activations):
                bound = self.bind_activation(layer, act, fmt)
                lo, hi = (0.0, 0.0) if choice.dynamic else self.layer_range(act, bound, placed)
                feeds.update(
                    quantizers.param_feeds(kind, rewrite.act_prefix(name, k), bound, lo, hi)
                )
        return feeds

    # -- running -------------------------------------------------------------------------
    @cached_property
    def _positions(self) -> dict[str, int]:
        """Tensor -> topological position of the node producing it (main graph)."""
        return {
            o: i for i, n in enumerate(self.info.nodes) if not n.graph_path for o in n.outputs
        }

    @cached_property
    def _attribute(self):
        return target_stats.attribute_reader(self.model.proto)

    @cached_property
    def _output_names(self) -> list[str]:
        return [t.name for t in self.info.outputs]

    @staticmethod
    def _run(sess, fetch: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        wanted = {i.name for i in sess.get_inputs()}
        try:
            return sess.run(list(fetch), {k: v for k, v in feeds.items() if k in wanted})
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"ONNX Runtime failed to run the model: {first}") from exc

    def _runs(
        self,
        sess,
        fetch: Sequence[str],
        feeds_of: Callable[[int], Mapping[str, np.ndarray]],
        indices: Sequence[int],
    ) -> Iterator[tuple[int, list[np.ndarray]]]:
        """``(i, outputs)`` of ``sess`` on ``feeds_of(i)`` for each index, in order, RUN_WORKERS
        runs at a time: ORT leaves a core idle in sequential parts (an LSTM over time), and at
        most RUN_WORKERS feeds' outputs are in memory at once."""
        if RUN_WORKERS <= 1 or len(indices) <= 1:
            for i in indices:
                yield i, self._run(sess, fetch, feeds_of(i))
            return
        pool = self._pool()
        for s in range(0, len(indices), RUN_WORKERS):
            window = indices[s : s + RUN_WORKERS]
            futures = [pool.submit(self._run, sess, fetch, feeds_of(i)) for i in window]
            for i, fut in zip(window, futures, strict=True):
                yield i, fut.result()

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(RUN_WORKERS, thread_name_prefix="bitlens-run")
        return self._executor

    def run_outputs(
        self, plan: Plan, samples: Sequence[int] | None = None
    ) -> dict[str, list[np.ndarray]]:
        """Model outputs under ``plan`` for the given feeds (default: the evaluation feeds)."""
        self._ensure_ref()
        idx = self.data.evaluation if samples is None else samples
        placed = self.placement(plan)
        _sim, sess = self._session_for(self._kinds(plan), tuple(placed))
        feeds = {**self._weight_feeds(plan.choices), **self._param_feeds(plan.choices, placed)}
        out: dict[str, list[np.ndarray]] = {n: [] for n in self._output_names}
        for i in idx:
            values = self._run(sess, self._output_names, {**self.data.samples[i], **feeds})
            for n, v in zip(self._output_names, values, strict=True):
                out[n].append(v)
        return out

    def simulation(self, plan: Plan) -> tuple[rewrite.SimGraph, dict[str, np.ndarray]]:
        """The graph the engine runs for ``plan`` and what it feeds besides each sample
        (weights, quantizer parameters): for checks that run the same graph another way,
        e.g. without ONNX Runtime's graph optimizations."""
        placed = self.placement(plan)
        sim, _ = self._session_for(self._kinds(plan), tuple(placed))
        feeds = {**self._weight_feeds(plan.choices), **self._param_feeds(plan.choices, placed)}
        return sim, feeds

    def evaluate(self, plan: Plan) -> Evaluation:
        """Per-layer (weight, local, accumulated) and per-output errors of ``plan``."""
        if plan.info is not self.info:
            raise EngineError("the plan was made for a different model")
        ref = self._ensure_ref()
        placed = self.placement(plan)
        sim, sess = self._session_for(self._kinds(plan), tuple(placed))
        choices = plan.choices
        feeds = {**self._weight_feeds(choices), **self._param_feeds(choices, placed)}
        layer_out = sim.layer_outputs
        # A layer's output depends only on the choices of the layers before it (topological
        # order): outputs upstream of every change are reused, neither fetched nor measured.
        keys = self._prefix_keys(plan)
        todo = [n for n in layer_out if keys[n] not in self._acc]
        fetch = list(dict.fromkeys([*self._output_names, *(layer_out[n] for n in todo)]))
        got: dict[str, list[np.ndarray]] = {n: [] for n in self._output_names}
        measures = {n: metrics.SampleErrors() for n in todo}
        # A feed (two, see _runs) at a time: each fetched layer output is measured and dropped.
        samples = self.data.samples
        for i, run in self._runs(
            sess, fetch, lambda i: {**samples[i], **feeds}, self.data.evaluation
        ):
            values = dict(zip(fetch, run, strict=True))
            for n in self._output_names:
                got[n].append(values[n])
            rows = batch_of(self.data.samples[i])
            for name in todo:
                out = layer_out[name]
                measures[name].add(ref[out][i], values[out], rows)
            del run, values
        for name in todo:
            self._acc[keys[name]] = measures[name].result()
        acc = {n: self._acc[keys[n]] for n in layer_out}  # before eviction can drop any
        for n in layer_out:
            self._acc.move_to_end(keys[n])
        while len(self._acc) > ACC_CACHE_ENTRIES:
            self._acc.popitem(last=False)
        local_err = self._local_errors(plan, layer_out, feeds)
        layers: dict[str, LayerResult] = {}
        for layer in self.info.layers:
            choice = plan[layer.name]
            out = layer_out.get(layer.name)
            accumulated = None if out is None else acc[layer.name][0]
            layers[layer.name] = LayerResult(
                name=layer.name,
                weight_format=None if choice.weight is None else choice.weight.name,
                activation_format=None if choice.activation is None else choice.activation.name,
                weight=None if choice.weight is None else self.recovery.weight_error(layer, choice),
                local=local_err.get(layer.name),
                accumulated=accumulated,
                bytes_before=layer.nbytes,
                bytes_after=weight_bytes_after(layer, choice.weight),
            )
        ev = self.data.evaluation
        outputs = {
            n: self._output_result(n, [ref[n][i] for i in ev], got[n]) for n in self._output_names
        }
        return Evaluation(
            layers=layers,
            outputs=outputs,
            bytes_before=sum(r.bytes_before for r in layers.values()),
            bytes_after=sum(r.bytes_after for r in layers.values()),
            params=self.info.params,
            providers=self._providers,
            first_divergence=self._first_divergence(
                [acc[n][1] for n in layer_out], list(layer_out)
            ),
            task_metric=self._task_metric(ref, got),
        )

    def _local_errors(
        self, plan: Plan, layer_out: Mapping[str, str], feeds: Mapping[str, np.ndarray]
    ) -> dict[str, TensorError]:
        """Local error of every quantized main-graph layer, running only the changed ones."""
        ref = self._ensure_ref()
        keys = {
            name: (name, choice, self.method.value)
            for name, choice in plan.choices.items()
            if name in layer_out
        }
        kinds = self._kinds(plan)
        todo = [name for name, key in keys.items() if key not in self._local]
        if len(todo) >= BULK_LOCAL_MIN:
            self._bulk_local_errors(todo, {n: keys[n] for n in todo}, kinds, layer_out, feeds)
            todo = []
        for name in todo:
            key = keys[name]
            session = self._local_session(name, kinds.get(name))
            fetch = rewrite.local_output(layer_out[name])
            reads = [i.name for i in session.get_inputs() if i.name in ref]
            sums = metrics.ErrorSums()
            for i, (value,) in self._runs(
                session,
                [fetch],
                lambda i, reads=reads: {**feeds, **{k: ref[k][i] for k in reads}},
                self.data.evaluation,
            ):
                sums.add(ref[layer_out[name]][i], value)
            self._local[key] = sums.result()
        return {name: self._local[key] for name, key in keys.items() if key in self._local}

    def _bulk_local_errors(
        self,
        names: Sequence[str],
        keys: Mapping[str, tuple],
        kinds: Mapping[str, str | None],
        layer_out: Mapping[str, str],
        feeds: Mapping[str, np.ndarray],
    ) -> None:
        """Local errors of many layers at once: one graph holding a copy of each layer, one
        run per feed (46 one-layer sessions cost 4x a forward pass on a CRNN; this one, 1x).
        Built for this set of layers and kinds, and not kept."""
        ref = self._ensure_ref()
        proto = rewrite.build_local(
            self.model.proto,
            self.info,
            {n: kinds.get(n) for n in names},
            ref.types,
            self._constant,
            list(names),
        )
        session = make_session(proto, self.device, arena=False)
        reads = [i.name for i in session.get_inputs() if i.name in ref]
        fetch = [rewrite.local_output(layer_out[n]) for n in names]
        sums = {n: metrics.ErrorSums() for n in names}
        for i, values in self._runs(
            session,
            fetch,
            lambda i, reads=reads: {**feeds, **{k: ref[k][i] for k in reads}},
            self.data.evaluation,
        ):
            for n, value in zip(names, values, strict=True):
                sums[n].add(ref[layer_out[n]][i], value)
            del values
        for n in names:
            self._local[keys[n]] = sums[n].result()

    def _output_result(
        self, name: str, ref: list[np.ndarray], got: list[np.ndarray]
    ) -> OutputResult:
        sums = metrics.ErrorSums()
        for r_i, g_i in zip(ref, got, strict=True):
            sums.add(r_i, g_i)
        err = sums.result()
        if all(metrics.classifier_like(np.asarray(r_i)) for r_i in ref):
            r, g = concat(ref), concat(got)
            if metrics.classifier_like(r):
                return OutputResult(name, err, metrics.top1_agreement(r, g), metrics.mean_kl(r, g))
        return OutputResult(name, err)

    def _prefix_keys(self, plan: Plan) -> dict[str, tuple[str, int, str]]:
        """Per layer, a key for the choices of every layer up to it (and the calibration)."""
        keys: dict[str, tuple[str, int, str]] = {}
        # The target's tensor quantizers count for the layers after the node producing them
        # (a later layer's choice can quantize an earlier tensor, so they are keyed apart).
        pos = self._positions
        placed = sorted(
            ((pos.get(t, -1), t, q) for t, q in self.placement(plan).items()),
            key=lambda item: item[0],
        )
        h, k = 0, 0
        for layer in self.info.layers:
            here = pos.get(layer.outputs[0], -1)
            while k < len(placed) and placed[k][0] < here:
                h = hash((h, placed[k][1], placed[k][2]))
                k += 1
            h = hash((h, layer.name, plan[layer.name]))
            keys[layer.name] = (layer.name, h, self.method.value)
        return keys

    @staticmethod
    def _first_divergence(
        rows: Sequence[tuple[float, ...]], names: Sequence[str]
    ) -> tuple[str | None, ...]:
        """Per evaluation sample, the first layer (topological order) whose output SQNR falls
        below DIVERGENCE_DB; None if none does."""
        if not rows:
            return ()
        first: list[str | None] = [None] * len(rows[0])
        for name, sqnrs in zip(names, rows, strict=True):
            for s, v in enumerate(sqnrs):
                if first[s] is None and v < DIVERGENCE_DB:
                    first[s] = name
        return tuple(first)

    def _task_metric(self, ref, got) -> dict[str, float]:
        labels = self.data.eval_labels
        if labels is None or not self._output_names:
            return {}
        name = self._output_names[0]
        r = concat([ref[name][i] for i in self.data.evaluation])
        g = concat(got[name])
        if not metrics.classifier_like(r) or len(r) != len(labels):
            return {}
        return {
            "accuracy_float": float(np.mean(np.argmax(r, -1) == labels)),
            "accuracy": float(np.mean(np.argmax(g, -1) == labels)),
        }

    # -- sensitivity sweep -----------------------------------------------------------------
    def sweep(
        self,
        formats: Sequence[str | Format],
        layers: Sequence[str] | None = None,
        *,
        suffix_runs: bool = True,
    ) -> Generator[Progress, None, list[SweepEntry]]:
        """Quantize one layer's weights at a time in each format; error at the first output.

        With ``suffix_runs`` (the default) each run covers only the nodes downstream of the
        layer, fed with the float values of what enters them (see :mod:`.suffix`); without,
        the whole model runs each time (the straightforward way, same numbers to float32
        rounding). Yields progress after each layer; the caller cancels by not resuming
        (or ``close()``). Returns entries sorted worst first (lowest SQNR).
        """
        fmts = [parse_format(f) for f in formats]
        names = list(self.info.layer_names if layers is None else layers)
        yield from self.prepare()
        ref = self._ensure_ref()
        base = Plan(self.info)
        sim, sess = self._session_for({})
        float_feeds = self._float_weights()
        out_name = self._output_names[0]
        boundaries = self._sweep_boundaries(sim, names, out_name) if suffix_runs else {}
        self._keep_float_values(sim, {b for bs in boundaries.values() for b in bs})
        entries: list[SweepEntry] = []
        workers = max(1, min(SWEEP_WORKERS, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers, thread_name_prefix="bitlens-sweep") as pool:
            for li, name in enumerate(names):
                layer = self.info.layer(name)
                runner = self._suffix(sim, name, out_name) if name in boundaries else None
                per_format = []
                for fmt in fmts:
                    base.with_choices({name: LayerChoice(fmt)})  # validates the format here
                    feeds = dict(float_feeds)
                    for w in layer.weights:
                        feeds[w.name] = self.quantized_weight(w, fmt, keep=False)
                    per_format.append(feeds)

                def one_run(
                    job: tuple[int, int], runner=runner, per_format=per_format
                ) -> np.ndarray:
                    k, i = job
                    feed = {**self.data.samples[i], **per_format[k]}
                    if runner is None:
                        return self._run(sess, [out_name], feed)[0]
                    if runner[0] is None:  # the output does not depend on this layer
                        return ref[out_name][i]
                    upstream = {b: ref[b][i] for b in runner[1]}
                    return self._run(runner[0], [out_name], {**feed, **upstream})[0]

                # ORT leaves a core idle in sequential parts (an LSTM over time): runs of the
                # layer's formats and feeds go two at a time; errors are summed in feed order.
                ev = self.data.evaluation
                jobs = [(k, i) for k in range(len(fmts)) for i in ev]
                got = dict(zip(jobs, pool.map(one_run, jobs), strict=True))
                for k, fmt in enumerate(fmts):
                    sums = metrics.ErrorSums()
                    for i in ev:
                        sums.add(ref[out_name][i], got[(k, i)])
                    entries.append(
                        SweepEntry(name, fmt.name, sums.result(), weight_bytes_after(layer, fmt))
                    )
                del got
                yield Progress(li + 1, len(names), f"sweep: {name}")
        entries.sort(key=lambda e: e.output.sqnr_db)
        return entries

    def _sweep_boundaries(
        self, sim: rewrite.SimGraph, names: Sequence[str], out_name: str
    ) -> dict[str, tuple[str, ...]]:
        """Per main-graph layer the sweep can run as a suffix, the tensors entering it."""
        main = {layer.name for layer in rewrite.main_layers(self.info)}
        out: dict[str, tuple[str, ...]] = {}
        for name in names:
            if name not in main:
                continue
            layer = self.info.layer(name)
            try:
                out[name] = suffix.boundary_names(
                    sim.model, layer.outputs[0], out_name, [w.name for w in layer.weights]
                )
            except suffix.NotASuffix:
                continue
        return out

    def _keep_float_values(self, sim: rewrite.SimGraph, names: set[str]) -> None:
        """Make sure the float reference holds ``names`` on every evaluation feed, running the
        float model once more (only if some are missing) with them exposed as outputs."""
        ref = self._ensure_ref()
        missing = sorted(
            n
            for n in names
            if n not in ref.types or any((n, i) not in self._store for i in self.data.evaluation)
        )
        missing = [n for n in missing if n not in {t.name for t in self.info.inputs}]
        if not missing:
            return
        model = onnx.ModelProto()
        model.CopyFrom(sim.model)
        exposed = {v.name for v in model.graph.output}
        model.graph.output.extend(
            rewrite.value_info_for(self.info, n) for n in missing if n not in exposed
        )
        sess = make_session(model, self.device)
        weights = self._float_weights()
        for i in self.data.evaluation:
            values = self._run(sess, missing, {**self.data.samples[i], **weights})
            for n, v in zip(missing, values, strict=True):
                ref.types.setdefault(n, (v.dtype, v.ndim))
                if (n, i) not in self._store:
                    self._store.put(n, i, v)

    def _suffix(self, sim: rewrite.SimGraph, name: str, out_name: str):
        """The (session, boundary) running the part of the float graph downstream of layer
        ``name`` (session None when ``out_name`` does not depend on it); built once, cached."""
        if name in self._suffixes:
            self._suffixes.move_to_end(name)
            return self._suffixes[name]
        layer = self.info.layer(name)
        part = suffix.build_suffix(sim.model, layer.outputs[0], out_name, self._ensure_ref().types)
        sess = None if part.model is None else make_session(part.model, self.device, arena=False)
        self._suffixes[name] = (sess, part.boundary)
        while len(self._suffixes) > SUFFIX_SESSIONS:
            self._suffixes.popitem(last=False)
        return self._suffixes[name]

    # -- for views -----------------------------------------------------------------------
    def weight_values(self, layer: str) -> np.ndarray:
        return self.model.weight(self.info.layer(layer).weights[0])

    def activation_values(self, layer: str) -> np.ndarray | None:
        values = self.activation_feeds(layer, self.data.calibration)
        return None if values is None else concat(values)

    def activation_feeds(self, layer: str, feeds: Sequence[int]) -> list[np.ndarray] | None:
        """The layer's float input activation on each of ``feeds`` (None: none kept)."""
        acts = self.info.layer(layer).activations
        ref = self._ensure_ref()
        if not acts or acts[0] not in ref:
            return None
        return [ref[acts[0]][i] for i in feeds]

    def scheme_table(
        self, layer: str, formats: Sequence[str | Format]
    ) -> list[tuple[str, TensorError, int]]:
        """Weight error and bytes of every format for one layer (the "scheme sandbox")."""
        lay = self.info.layer(layer)
        rows = []
        for f in formats:
            fmt = parse_format(f)
            rows.append((fmt.name, self.weight_error(lay, fmt), weight_bytes_after(lay, fmt)))
        return rows
