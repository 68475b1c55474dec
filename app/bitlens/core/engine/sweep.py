"""The sensitivity sweep: one layer's weights at a time in each format, error at the
first float output (or, for a layer that does not reach it, the first it reaches: a
detector's other heads), each run covering only what is downstream of the layer (see
:mod:`.suffix`)."""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Generator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

import numpy as np
import onnx

from bitlens.core import metrics
from bitlens.core.engine import chain, rewrite, suffix
from bitlens.core.engine.graphs import node_reads
from bitlens.core.engine.output_metrics import FLOAT_TYPES
from bitlens.core.engine.parts import common_shape
from bitlens.core.engine.session import make_session
from bitlens.core.engine.structure import FLOAT_KEY
from bitlens.core.formats import Format, parse_format
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import Progress, SweepEntry
from bitlens.core.shared_weights import one_per_group
from bitlens.core.weights import weight_bytes_after

if TYPE_CHECKING:
    from bitlens.core.data import Dataset
    from bitlens.core.engine.arena_release import ArenaReleaser
    from bitlens.core.engine.store import ActivationStore
    from bitlens.core.model.types import ModelInfo

SUFFIX_SESSIONS = 4  # suffix sessions kept (their buffers come from the shared arena)
SWEEP_WORKERS = 2  # concurrent sweep runs (ONNX Runtime sessions run thread-safely)
# Formats of one layer whose weights are held at once: up to SWEEP_WORKERS while they stay
# under this many bytes, else one (its runs over the feeds still go two at a time).
SWEEP_WINDOW_BYTES = 16 << 20
PREPARE_AHEAD = True  # the next layer's weights and session are prepared during runs
# ONNX Runtime threads per suffix session; None: the cores shared among the SWEEP_WORKERS
# runs in flight (suffix_threads: one each on 2 cores), 0: ONNX Runtime's default (one per
# core for each run, SWEEP_WORKERS x as many threads as cores). Measured on the 2-core
# machine with the sweep's process given nearly all of the cores (the quiet machine the
# targets are set on), 16 or 23 layers x 4 formats, 0 and 1 alternated in one process:
# CRNN 0.47x, 0.47x of L x F float runs with 0, 0.40x, 0.37x with 1 (CPU 0.76x -> 0.65-0.69x);
# ddddocr's common.onnx 0.82x, 0.84x -> 0.76x, 0.77x (CPU 1.16x -> 1.04x). Under load from
# other processes a one-thread run gets a smaller share of the cores (load 10-14: CRNN 0.55x
# against 0.47x). ONNX Runtime may split a convolution's sums differently over one thread
# and two (tests/core/test_sweep_speed.py): the suffix sweep equals the whole-model sweep
# to float32 rounding either way.
SUFFIX_THREADS: int | None = None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def sweep_workers() -> int:
    """Sweep runs in flight at once: SWEEP_WORKERS, at most one per core."""
    return max(1, min(SWEEP_WORKERS, _cores()))


def suffix_threads() -> int:
    """ONNX Runtime threads of each suffix session (see SUFFIX_THREADS)."""
    if SUFFIX_THREADS is not None:
        return SUFFIX_THREADS
    return max(1, _cores() // sweep_workers())


class Sweep:
    """Mixin: ``sweep`` over layers and formats."""

    info: ModelInfo
    data: Dataset
    device: str
    _store: ActivationStore
    _suffixes: OrderedDict[str, tuple[object | None, tuple[str, ...]]]
    _arena: ArenaReleaser

    def sweep(
        self,
        formats: Sequence[str | Format],
        layers: Sequence[str] | None = None,
        *,
        suffix_runs: bool = True,
    ) -> Generator[Progress, None, list[SweepEntry]]:
        """Quantize one layer's weights at a time in each format; error at the first float output.

        With ``suffix_runs`` (the default) each run covers only the nodes downstream of the
        layer, fed with the float values of what enters them (see :mod:`.suffix`); without,
        the whole model runs each time (the straightforward way, same numbers to float32
        rounding). Yields progress after each layer; the caller cancels by not resuming
        (or ``close()``). Returns entries sorted worst first (lowest SQNR).
        """
        fmts = [parse_format(f) for f in formats]
        names = one_per_group(self.info, self.info.layer_names if layers is None else layers)
        yield from self.prepare()
        self._room_for_sweep()
        base = Plan(self.info)
        sim, sess = self._session_for({})
        float_feeds = self._float_weights()
        outs = self._sweep_outputs(sim.model, names)
        graph = self._suffix_graph(sim) if suffix_runs else None
        layouts = self._sweep_layouts(graph, names, outs) if graph is not None else {}
        self._keep_float_values(graph, {b for la in layouts.values() if la for b in la.boundary})
        parts: dict[tuple[int, str], tuple] = {}  # the shared parts' sessions (suffix.py)
        entries: list[SweepEntry] = []
        workers = sweep_workers()
        for name in names:
            for fmt in fmts:
                base.with_choices({name: LayerChoice(fmt)})  # validates the format here
        # ORT leaves a core idle in sequential parts (an LSTM over time): runs of the layer's
        # formats and feeds go two at a time; errors are summed in feed order. The weights
        # of `step` formats at a time are held (a 34 MB Gemm weight in four formats and
        # their temporaries peaked at +320 MB).
        tasks: list[tuple[int, str, list[Format]]] = []
        for li, name in enumerate(names):
            layer = self.info.layer(name)
            step = max(1, min(workers, SWEEP_WINDOW_BYTES // max(1, layer.nbytes)))
            tasks += [(li, name, fmts[at : at + step]) for at in range(0, len(fmts), step)]

        def prepare(k: int):
            """Task k's suffix runner and weight feeds (quantized here); the first task's
            sessions built on the run pool's threads, idle until its runs."""
            _, name, window = tasks[k]
            runner = None
            if graph is not None and name in layouts:
                builders = pool if k == 0 else None
                runner = self._suffix(graph, name, outs[name], layouts[name], parts, builders)
            return runner, self._window_feeds(self.info.layer(name), window, float_feeds)

        ev = self.data.evaluation
        ref = self._ensure_ref()
        # Runs go SWEEP_WORKERS at a time as a sliding window over every (layer, format,
        # feed), not window by window: a new run starts as soon as one is measured, the next
        # layer's first runs beside this layer's last one (waiting for both runs of a window
        # left a core idle for the slower one's tail and the measuring; on two cores the
        # sweep used 1.7 of them). A run is measured after the next one started, so the
        # measuring overlaps two runs. Errors are summed in feed order, as before.
        flight: deque = deque()  # (task, format, feed, future), in the order submitted
        sums = {k: [metrics.ErrorSums() for _ in window] for k, (_, _, window) in enumerate(tasks)}
        left = {k: len(window) * len(ev) for k, (_, _, window) in enumerate(tasks)}

        def measure() -> Generator[Progress, None, None]:
            """Sum the oldest run's error; a finished task's entries, a layer's progress."""
            k, j, i, fut = flight.popleft()
            got = fut.result()
            del fut
            li, name, window = tasks[k]
            # an output whose length depends on the data (metrics.zero_padded)
            sums[k][j].add(*metrics.zero_padded(ref[outs[name]][i], got))
            del got
            left[k] -= 1
            if left[k]:
                return
            layer = self.info.layer(name)
            at = None if outs[name] == self._read_at else outs[name]
            for fmt, err in zip(window, sums.pop(k), strict=True):
                entries.append(
                    SweepEntry(name, fmt.name, err.result(), weight_bytes_after(layer, fmt), at)
                )
            if k + 1 == len(tasks) or tasks[k + 1][0] != li:
                # This layer's runs' buffers, once the process grew by a feed's values since
                # the last time (arena_release.py). Given back after every layer, the next
                # layer's runs faulted theirs in again: on the benchmark CRNN 150k page faults
                # a sweep against 60k, 0.2-0.3 s of its 5.4 s of CPU (docs/benchmarks.md,
                # "sweepwall, session 15").
                self._arena.maybe_release()
                yield Progress(li + 1, len(names), f"sweep: {name}")

        # The next task is prepared (its weights quantized, its suffix session built) while
        # the runs of this one go: 10-40% of a sweep was this work with the run pool idle.
        # Only for small layers, so that one more window of weights is held at most.
        with (
            ThreadPoolExecutor(workers, thread_name_prefix="bitlens-sweep") as pool,
            ThreadPoolExecutor(1, thread_name_prefix="bitlens-sweep-prep") as prep,
        ):
            ahead = prep.submit(prepare, 0) if tasks else None
            for k, (_, name, window) in enumerate(tasks):
                assert ahead is not None
                runner, per_format = ahead.result()
                layer = self.info.layer(name)
                ahead = None
                if k + 1 < len(tasks):
                    after = self.info.layer(tasks[k + 1][1]).nbytes
                    if PREPARE_AHEAD and max(layer.nbytes, after) <= SWEEP_WINDOW_BYTES // 2:
                        ahead = prep.submit(prepare, k + 1)
                for j in range(len(window)):
                    for i in ev:
                        while len(flight) > workers:
                            yield from measure()
                        if len(flight) == workers:  # a run's thread is free, then measure
                            wait([f for *_, f in flight], return_when=FIRST_COMPLETED)
                        run = pool.submit(
                            self._sweep_run, runner, sess, per_format[j], i, outs[name]
                        )
                        flight.append((k, j, i, run))
                del per_format
                if ahead is None and k + 1 < len(tasks):
                    while flight:  # a large layer's weights: one window held at a time
                        yield from measure()
                    ahead = prep.submit(prepare, k + 1)
            while flight:
                yield from measure()
        self._release_float_weights()
        entries.sort(key=lambda e: e.output.sqnr_db)
        return entries

    @property
    def _read_at(self) -> str:
        """The tensor the default output's error is read at (the tensor before its pick)."""
        return self.measured_on.get(self._error_output, self._error_output)

    def _room_for_sweep(self) -> None:
        """Drop what re-evaluation keeps and the sweep never reads: the values kept at layer
        cuts (prefix.py) and the plan's quantized weights (the sweep quantizes one layer at
        a time, keep=False). Both are caches, rebuilt by the next evaluation (one whole run,
        and one quantization of the plan's weights); holding them through a sweep put its
        peak RSS 25-60 MiB over issue 11's bound on the CRNN and ddddocr's common.onnx."""
        self._prefix_values.clear()
        self._drop_weight_cache()
        self._arena.maybe_release()  # e.g. the float reference's buffers (Engine.prepare)

    def _window_feeds(self, layer, window, float_feeds) -> list[dict[str, np.ndarray]]:
        """Per format of ``window``, the float weights with ``layer``'s quantized in it."""
        per_format = []
        for fmt in window:
            feeds = dict(float_feeds)
            for w in layer.weights:
                feeds[w.name] = self.quantized_weight(w, fmt, keep=False)
            per_format.append(feeds)
        return per_format

    def _sweep_outputs(self, model: onnx.ModelProto, names: Sequence[str]) -> dict[str, str]:
        """Per layer, the output its entries are read at: the first float output, else the
        first float output computed from the layer's output. CenterFace's scale, offset and
        landmark heads do not reach its heatmap (output 0): read there, every format of
        them showed no error at all (inf dB), as if they could be crushed to one bit."""
        default = self._error_output
        floats = [t.name for t in self.info.outputs if t.dtype in FLOAT_TYPES]
        nodes = list(model.graph.node)
        reads = [set(node_reads(n)) for n in nodes]
        feeds_default = {default}  # every tensor the default output is computed from
        for node, read in zip(reversed(nodes), reversed(reads), strict=True):
            if feeds_default.intersection(node.output):
                feeds_default |= read
        out: dict[str, str] = {}
        for name in names:
            start = self.info.layer(name).outputs[0]
            out[name] = default
            if start in feeds_default or len(floats) < 2:
                continue
            reached = {start}
            for node, read in zip(nodes, reads, strict=True):  # topological order
                if reached & read:
                    reached.update(node.output)
            out[name] = next((o for o in floats if o in reached), default)
        # an output whose rows a TopK/NMS picks is read before the pick (Engine.measured_on)
        return {name: self.measured_on.get(o, o) for name, o in out.items()}

    def _sweep_run(self, runner, sess, weights, i: int, out_name: str) -> np.ndarray:
        """Output ``out_name`` on evaluation feed ``i`` with ``weights`` fed: through the
        layer's suffix ``runner`` (see _suffix), else the whole graph's session ``sess``."""
        ref = self._ensure_ref()
        feed = {**self.data.samples[i], **weights}
        if runner is None:
            return self._run(sess, [out_name], feed)[0]
        if runner[0] is None:  # the output does not depend on this layer
            return ref[out_name][i]
        upstream = {b: ref[b][i] for b in runner[1]}
        return self._run(runner[0], [out_name], {**feed, **upstream})[0]

    def _suffix_graph(self, sim: rewrite.SimGraph) -> suffix.SuffixGraph:
        """The float graph read once for every layer's suffix, its grid at the main layers'
        outputs (suffix.py)."""
        ref = self._ensure_ref()
        ev = self.data.evaluation
        cuts = self._cuts.get(FLOAT_KEY)  # found in this very graph, which they read once
        return suffix.SuffixGraph(
            sim.model,
            [layer.outputs[0] for layer in rewrite.main_layers(self.info)],
            ref.types.get,
            lambda n: common_shape([ref.value(n, i).shape for i in ev]),
            index=None if cuts is None else cuts.graph,
        )

    def _sweep_layouts(
        self, graph: suffix.SuffixGraph, names: Sequence[str], outs: dict[str, str]
    ) -> dict[str, suffix.Layout | None]:
        """Per main-graph layer the sweep can run as a suffix, how (None: its output does
        not depend on the layer)."""
        main = {layer.name for layer in rewrite.main_layers(self.info)}
        out: dict[str, suffix.Layout | None] = {}
        for name in names:
            if name not in main:
                continue
            layer = self.info.layer(name)
            try:
                out[name] = graph.layout(
                    layer.outputs[0], outs[name], [w.name for w in layer.weights]
                )
            except suffix.NotASuffix:
                continue
        return out

    def _keep_float_values(self, graph: suffix.SuffixGraph | None, names: set[str]) -> None:
        """Make sure the float reference holds ``names`` on every evaluation feed. Those it
        lacks (tensors it does not keep: integer shape arithmetic such as PP-OCRv4's
        ``p2o.helper.concat.*``, floats between kept ones) are computed by a graph of only
        their producers, fed with what it keeps. A session of the whole float graph with
        them exposed took 0.2-0.45 s of CPU (its build, one run per feed) at the start of
        every sweep of rapidocr's PP-OCRv4 recognizer, serial, before the first run; the
        graph of their producers (47 of its 697 nodes) 11-12 ms, with the same values bit
        for bit (docs/benchmarks.md, "sweepstart")."""
        ref = self._ensure_ref()
        ev = self.data.evaluation

        def held(n: str) -> bool:
            return n in ref.types and all((n, i) in self._store for i in ev)

        inputs = {t.name for t in self.info.inputs}
        missing = sorted(n for n in names if n not in inputs and not held(n))
        if not missing or graph is None:
            return
        model = graph.producers_model(missing, held, lambda n: rewrite.value_info_for(self.info, n))
        sess = make_session(model, self.device)
        kept = [n for n in suffix.io_names(model)[0] if held(n)]
        weights = self._float_weights()
        for i in ev:
            upstream = {n: ref[n][i] for n in kept}
            values = self._run(sess, missing, {**self.data.samples[i], **weights, **upstream})
            for n, v in zip(missing, values, strict=True):
                ref.types.setdefault(n, (v.dtype, v.ndim))
                if (n, i) not in self._store:
                    self._store.put(n, i, v)

    def _suffix(
        self,
        graph: suffix.SuffixGraph,
        name: str,
        out_name: str,
        layout,
        parts,
        pool: Executor | None = None,
    ):
        """The (runner, boundary) running what is downstream of layer ``name`` up to
        ``out_name`` (runner None when ``out_name`` does not depend on it): its head's
        session, chained to the shared parts' sessions (kept in ``parts``) when there are
        any; built once, cached. ``pool``: threads to build the sessions on, several at once
        (the first layer's head and parts, before any run)."""
        if name in self._suffixes:
            self._suffixes.move_to_end(name)
            return self._suffixes[name]
        if layout is None:
            self._suffixes[name] = (None, ())
        else:

            def make(m: onnx.ModelProto):
                return make_session(m, self.device, threads=suffix_threads(), blocked_chains=True)

            head = graph.head_model(layout, out_name)
            missing = [p for p in layout.parts if (p, out_name) not in parts]
            models = [head, *(graph.part_model(p, out_name) for p in missing)]
            # ONNX Runtime builds a session without holding the interpreter lock (as
            # chain.build_chain does): the first layer's up to PARTS + 1 sessions, built
            # one by one on the preparing thread, were 176 of the 366 ms before a PP-OCRv4
            # sweep's first run, one core idle (docs/benchmarks.md, "sweepstart").
            if pool is not None and len(models) > 1:
                made = list(pool.map(make, models))
            else:
                made = [make(m) for m in models]
            for p, model, sess in zip(missing, models[1:], made[1:], strict=True):
                parts[(p, out_name)] = (sess, *suffix.io_names(model))
            runner = made[0]
            if layout.parts:
                chained = [(runner, *suffix.io_names(head))]
                chained += [parts[(p, out_name)] for p in layout.parts]
                runner = chain.Chain(chained)
            self._suffixes[name] = (runner, layout.boundary)
        while len(self._suffixes) > SUFFIX_SESSIONS:
            self._suffixes.popitem(last=False)
        return self._suffixes[name]
