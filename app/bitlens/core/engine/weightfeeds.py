"""Weights fed to the simulation sessions: the float weights, each layer's weights
quantized in a format (cached within a byte limit), and the weight error of a format."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core import metrics
from bitlens.core.engine.recovery_cache import RecoveryCache
from bitlens.core.engine.rewrite import fed_constants
from bitlens.core.engine.weightspill import spill_weights
from bitlens.core.formats import Format
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


class WeightFeeds:
    """Mixin: the weight inputs of the engine's sessions."""

    model: LoadedModel
    info: ModelInfo
    _float_feeds: dict[str, np.ndarray] | None
    _wcache: OrderedDict[tuple[str, str], QuantizedWeight]
    _wcache_bytes: int
    _werr: dict[tuple[str, str], TensorError]

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
        return dict(self._float_feeds)

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
        value = self.model.weight(w)
        q = quantize_weight(value, w, fmt)
        release_pages(value)  # a mapped external weight: read again only when needed
        if not keep:
            return q
        self._wcache[key] = q
        self._wcache_bytes += q.nbytes
        while self._wcache_bytes > self._wcache_limit and len(self._wcache) > 1:
            _, old = self._wcache.popitem(last=False)
            self._wcache_bytes -= old.nbytes
        return q

    def _drop_weight_cache(self) -> None:
        self._wcache.clear()
        self._wcache_bytes = 0

    def weight_error(self, layer: Layer, fmt: Format) -> TensorError:
        """Error of the layer's weights (all of them, concatenated) in ``fmt``."""
        key = (layer.name, fmt.name)
        if key not in self._werr:
            self._werr[key] = self._weight_error(layer, fmt)
        return self._werr[key]

    def _weight_error(self, layer: Layer, fmt: Format) -> TensorError:
        sums = metrics.ErrorSums()  # over the weights in turn, as if concatenated
        for w in layer.weights:
            value = self.model.weight(w)
            sums.add(value.ravel(), self.quantized_weight(w, fmt).ravel())
            release_pages(value)
        return sums.result()

    def _release_float_weights(self) -> None:
        """Let the pages of mapped external weights go after a run read them."""
        for value in (self._float_feeds or {}).values():
            release_pages(value)

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
