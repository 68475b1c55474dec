"""Weights fed to the simulation sessions: the float weights, each layer's weights
quantized in a format (cached within a byte limit), and the weight error of a format."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cached_property, partial
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core import lstm_kernel, metrics
from bitlens.core.engine import lstm_nodes
from bitlens.core.engine.recovery_cache import RecoveryCache
from bitlens.core.engine.rewrite import fed_constants, shared_biases
from bitlens.core.engine.weightspill import spill_weights
from bitlens.core.formats import Format, fitted
from bitlens.core.model.external import release_pages
from bitlens.core.model.types import Layer, WeightInfo
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.quantized import QuantizedWeight, quantize_weight
from bitlens.core.results import TensorError
from bitlens.core.weights import bind

if TYPE_CHECKING:
    from bitlens.core.model.loader import LoadedModel
    from bitlens.core.model.types import ModelInfo

WEIGHT_CACHE_BYTES = 512 << 20  # at most; and at most twice the model's weights (see below)
# Weights quantized at once when a plan needs several: numpy leaves the interpreter lock in
# its array loops, so two threads use both cores (a first W8A8 evaluation quantizes every
# weight: 60-130 ms of one core on the CRNN and ddddocr's common.onnx, the other idle).
QUANTIZE_WORKERS = 2
# ... only weights this large go to the two threads (when two or more of them are due);
# smaller ones are quantized in turn. numpy keeps the interpreter lock through the many
# small operations of a small weight, so two threads of them wait on each other: on the
# generated CRNN (47 weights under 1 MiB) the W8A8 feeds took 76 ms two at a time and 30
# ms in turn (near-quiet 2-core machine).
POOL_MIN_BYTES = 1 << 20


class WeightFeeds:
    """Mixin: the weight inputs of the engine's sessions."""

    model: LoadedModel
    info: ModelInfo
    _float_feeds: dict[str, np.ndarray] | None
    _wcache: OrderedDict[tuple[str, str], QuantizedWeight]
    _wcache_bytes: int
    _werr: dict[tuple[str, str], TensorError]
    _werr_ahead: Future | None = None  # _weight_errors_ahead's work on the side thread

    map_float_weights = True  # large float weights held once, memory-mapped (weightspill.py)

    def _float_weights(self) -> dict[str, np.ndarray]:
        if self._float_feeds is None:
            if self.map_float_weights:
                spill_weights(self.model, [w for la in self.info.layers for w in fed_constants(la)])
            # weight() widens fp16/bf16 to float32; the session's inputs keep the stored type.
            self._float_feeds = {
                w.name: self.model.weight(w).astype(np.dtype(w.dtype), copy=False)
                for layer in self.info.layers
                for w in fed_constants(layer)
            }
            for bias, alias in self._bias_inputs.values():
                self._float_feeds[alias] = self._float_feeds[bias]
        return dict(self._float_feeds)

    @cached_property
    def _bias_inputs(self) -> dict[str, tuple[str, str]]:
        """:func:`rewrite.shared_biases`: the layers that read a shared bias from their own
        input; each is fed the bias (:meth:`_weight_feeds`) or its own int32-rounded copy
        (kernel_bias.py)."""
        return shared_biases(self.info)

    @cached_property
    def recovery(self) -> RecoveryCache:
        """Recovery results (GPTQ, bias correction...) computed once per layer and format."""
        return RecoveryCache(self)  # type: ignore[arg-type]

    @cached_property
    def _wcache_limit(self) -> int:
        """Room for a plan's weights (values and codes: 1.25x the float weights at 8-bit
        codes) and the changed layers of the next plans, not for every format tried."""
        weights = sum(la.nbytes for la in self.info.layers)
        return min(WEIGHT_CACHE_BYTES, max(3 * weights // 2, 64 << 20))

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
        q = self._quantize_now(w, fmt)
        if keep:
            self._keep_quantized(key, q)
        return q

    @cached_property
    def _fits(self) -> dict[tuple[str, str], object]:
        """(weight, bound format) -> what quantizing it fitted (k-means codebooks: a few
        bytes per channel), kept when the weight cache drops the codes and values: a search
        on nudenet's YOLOv8n fitted 192 k-means weight/format pairs 346 times (33 s of a
        655 s profile, docs/benchmarks.md "The plans run as deployed, built once"). The weights never
        change in an engine, so neither do these."""
        return {}

    def _quantize_now(self, w: WeightInfo, fmt: Format) -> QuantizedWeight:
        """``w`` in the bound format ``fmt``, computed (thread-safe: reads the model only;
        a fit two threads make at once is the same numbers)."""
        value = self.model.weight(w)
        key = (w.name, fmt.name)
        fit = self._fits.get(key)
        q = quantize_weight(value, w, fmt, fit)
        if fit is None and (made := fitted(q.q)) is not None:
            self._fits[key] = made
        release_pages(value)  # a mapped external weight: read again only when needed
        return q

    def _keep_quantized(self, key: tuple[str, str], q: QuantizedWeight) -> None:
        self._wcache[key] = q
        self._wcache_bytes += q.nbytes
        while self._wcache_bytes > self._wcache_limit and len(self._wcache) > 1:
            _, old = self._wcache.popitem(last=False)
            self._wcache_bytes -= old.nbytes

    def _quantized_many(
        self, pairs: Sequence[tuple[WeightInfo, Format]]
    ) -> list[QuantizedWeight]:
        """Each (weight, format) of ``pairs`` quantized, as :meth:`quantized` gives them one
        by one: those not cached are computed QUANTIZE_WORKERS at a time
        (largest first, so the threads finish together) and cached in ``pairs``' order."""
        bound = [(w, bind(fmt, w)) for w, fmt in pairs]
        todo = {
            (w.name, fmt.name): (w, fmt)
            for w, fmt in bound
            if (w.name, fmt.name) not in self._wcache
        }
        done: dict[tuple[str, str], QuantizedWeight] = {}
        large = [k for k in todo if todo[k][0].nbytes >= POOL_MIN_BYTES]
        if QUANTIZE_WORKERS > 1 and len(large) > 1:
            order = sorted(large, key=lambda k: -todo[k][0].nbytes)
            with ThreadPoolExecutor(QUANTIZE_WORKERS, thread_name_prefix="bitlens-q") as pool:
                found = pool.map(lambda k: self._quantize_now(*todo[k]), order)
                done = dict(zip(order, found, strict=True))
            done.update((k, self._quantize_now(*todo[k])) for k in todo if k not in done)
            for key in todo:
                self._keep_quantized(key, done[key])
        return [done.get((w.name, fmt.name)) or self.quantized(w, fmt) for w, fmt in bound]

    @cached_property
    def _kernel_cache(self) -> OrderedDict[tuple[str, str], dict[str, np.ndarray]]:
        return OrderedDict()

    def _kernel_feeds(self, w: WeightInfo, fmt: Format) -> dict[str, np.ndarray]:
        """:func:`lstm_nodes.feeds` of ``w`` in ``fmt``, the last few kept (a transposed copy
        of the codes: a sweep evaluates the same LSTM formats plan after plan)."""
        key = (w.name, bind(fmt, w).name)
        cache = self._kernel_cache
        if key not in cache:
            cache[key] = lstm_nodes.feeds(self.quantized(w, fmt))
            while len(cache) > 8:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def _drop_weight_cache(self) -> None:
        self._kernel_cache.clear()
        self._wcache.clear()
        self._wcache_bytes = 0

    def weight_error(self, layer: Layer, fmt: Format) -> TensorError:
        """Error of the layer's weights (all of them, concatenated) in ``fmt``."""
        self._join_weight_errors()
        key = (layer.name, fmt.name)
        if key not in self._werr:
            self._werr[key] = self._weight_error(layer, fmt)
        return self._werr[key]

    def keep_weight_errors(self, other: WeightFeeds) -> None:
        """Take the weight errors ``other``, an engine of the same loaded model on other
        data, has computed: a weight's error in a format depends on the weights and the
        format only. The window opens a new engine when its data change
        (bitlens/gui/jobs.py, change_data), and the layer detail asked them all again: on
        paraphrase-MiniLM-L3's 30522-row embedding the 32 formats' errors cost 17 s of CPU
        once more after the input sizes were given."""
        if other.model is not self.model:
            raise ValueError("weight errors are kept only from an engine of the same model")
        # Those still summed on other's side thread (_weight_errors_ahead) are left out:
        # they are computed again when asked.
        self._werr.update(other._werr)

    def _weight_error(self, layer: Layer, fmt: Format) -> TensorError:
        return self._error_of(layer, lambda w: self.quantized_weight(w, fmt))

    def _error_of(self, layer: Layer, values_of: Callable[[WeightInfo], np.ndarray]) -> TensorError:
        sums = metrics.ErrorSums()  # over the weights in turn, as if concatenated
        for w in layer.weights:
            value = self.model.weight(w)
            sums.add(value.ravel(), values_of(w).ravel())
            release_pages(value)
        return sums.result()

    def _weight_errors_ahead(
        self, choices: Sequence[tuple[Layer, LayerChoice]], got: Sequence[np.ndarray]
    ) -> None:
        """The weight errors of the plan's layers not known yet (every evaluation reports
        each layer's), QUANTIZE_WORKERS at a time from the values ``got`` just quantized
        (in the order of :meth:`_weight_feeds`'s pairs): the sums :meth:`weight_error`
        computes, the other core busy too (47 ms of one core on common.onnx's W8A8). On the
        side thread (Runs._aside) while the plan runs: no run needs them, only the results
        (:meth:`weight_error` waits for them)."""
        self._join_weight_errors()
        todo: list[tuple[tuple[str, str], Layer, dict[str, np.ndarray]]] = []
        values = iter(got)
        for layer, choice in choices:
            if choice.recovery is not None:
                continue
            assert choice.weight is not None
            mine = {w.name: next(values) for w in layer.weights}
            key = (layer.name, choice.weight.name)
            if key not in self._werr and key not in {k for k, _, _ in todo}:
                todo.append((key, layer, mine))
        large = [t for t in todo if t[1].nbytes >= POOL_MIN_BYTES]
        if QUANTIZE_WORKERS < 2 or len(large) < 2:
            return  # computed in turn when asked for (weight_error)
        work = partial(self._weight_errors_of, todo, large)
        self._werr_ahead = self._aside(work)  # type: ignore[attr-defined]
        if self._werr_ahead is None:
            work()

    def _weight_errors_of(
        self,
        todo: Sequence[tuple[tuple[str, str], Layer, dict[str, np.ndarray]]],
        large: Sequence[tuple[tuple[str, str], Layer, dict[str, np.ndarray]]],
    ) -> None:
        """:meth:`_weight_errors_ahead`'s sums: ``large`` two at a time, then the rest."""
        error = lambda t: self._error_of(t[1], lambda w: t[2][w.name])  # noqa: E731
        with ThreadPoolExecutor(QUANTIZE_WORKERS, thread_name_prefix="bitlens-q") as pool:
            found = dict(zip((t[0] for t in large), pool.map(error, large), strict=True))
        for key, layer, mine in todo:
            self._werr[key] = found[key] if key in found else error((key, layer, mine))

    def _join_weight_errors(self) -> None:
        """Wait for the weight errors :meth:`_weight_errors_ahead` computes aside (and raise
        what that raised)."""
        ahead, self._werr_ahead = self._werr_ahead, None
        if ahead is not None:
            ahead.result()

    def _release_float_weights(self) -> None:
        """Let the pages of mapped external weights go after a run read them."""
        for value in (self._float_feeds or {}).values():
            release_pages(value)

    def _weight_feeds(
        self,
        plan: Plan | Mapping[str, LayerChoice],
        made: dict[tuple[str, str], QuantizedWeight] | None = None,
    ) -> dict[str, np.ndarray]:
        """The weight inputs of a run of ``plan``; ``made`` gets the weights quantized for
        it by (weight, bound format): a plan's integer-kernel biases round on their scales
        (kernel_bias.py). Read from the cache again, a plan whose weights exceed it
        quantized every weight a second time (``bench_engine.py external``, ten 268 MB
        weights, 512 MiB of cache: 11 s of a first W8A8 evaluation's 28; docs/benchmarks.md,
        "memrow, session 14"). Passed as values, they are held no longer than the feeds."""
        feeds = self._float_weights()
        choices = [
            (self.info.layer(name), choice)
            for name, choice in (plan.items() if isinstance(plan, Mapping) else ())
            if choice.weight is not None
        ]
        pairs = [
            (w, choice.weight)
            for layer, choice in choices
            if choice.recovery is None
            for w in layer.weights
        ]
        got = self._quantized_many(pairs)
        if made is not None:
            made.update(((q.name, q.fmt.name), q) for q in got)
        quantized = [q.values for q in got]
        self._weight_errors_ahead(choices, quantized)
        values = iter(quantized)  # in the order of the loop below
        own: set[str] = set()  # shared-bias inputs fed a reader's own corrected bias
        for layer, choice in choices:  # in plan order: a shared weight's last reader wins
            if choice.recovery is not None:
                fed = self.recovery.feeds(layer, choice)
                split = self._bias_inputs.get(layer.name)
                if split is not None and split[0] in fed:
                    # bias correction of one reader of a shared bias: the shift it cancels
                    # is this reader's own, so only this reader's input gets it
                    fed[split[1]] = fed.pop(split[0])
                    own.add(split[1])
                feeds.update(fed)
                continue
            for w in layer.weights:
                feeds[w.name] = next(values)
            if choice.dynamic and lstm_kernel.eligible(layer, choice.weight, choice.activation, True):
                # the codes a graph running it as the kernel reads (lstm_nodes; unread,
                # and left out of the run, where the target runs no kernel)
                for w in layer.weights:
                    feeds.update(self._kernel_feeds(w, choice.weight))
        for bias, alias in self._bias_inputs.values():
            if alias not in own:
                feeds[alias] = feeds[bias]
        return feeds
