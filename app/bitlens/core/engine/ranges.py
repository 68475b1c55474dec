"""Calibration: activation statistics over the calibration feeds, the calibrated range
of every quantized activation (per tensor or per channel), and the quantizer parameters
fed to the sessions."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bitlens.core import targets
from bitlens.core.engine import quantizers, rewrite, target_stats
from bitlens.core.engine.calibration import (
    ActivationStats,
    CalibrationMethod,
    activation_range,
    channel_stats,
    method_of,
    needs_sample,
)
from bitlens.core.engine.session import make_session
from bitlens.core.errors import EngineError
from bitlens.core.formats import Format, Granularity
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice
from bitlens.core.recovery import Recovery
from bitlens.core.results import Progress

if TYPE_CHECKING:
    from bitlens.core.data import Dataset
    from bitlens.core.engine.arena_release import ArenaReleaser
    from bitlens.core.engine.prefix import PrefixValues
    from bitlens.core.model.loader import LoadedModel
    from bitlens.core.model.types import ModelInfo


PARAM_ENTRIES = 20_000  # quantizer parameter feeds kept (see Ranges._params)


class Ranges:
    """Mixin: ``calibrate`` and the calibrated ranges (needs the float reference)."""

    model: LoadedModel
    info: ModelInfo
    data: Dataset
    device: str
    method: CalibrationMethod
    _stats: dict[str, ActivationStats]
    _minmax: dict[str, tuple[float, float]]
    _ranges: dict[tuple[str, str, str], tuple[Any, Any]]
    _local: dict
    _acc: dict
    _prefix_values: PrefixValues
    _param_cache: dict[tuple, dict[str, np.ndarray]]
    _arena: ArenaReleaser
    qdq_quantizers: bool  # Structures: the engine's quantizer kinds
    _engine_kind: Callable[[Format | None, bool], str | None]
    _measure_later: Callable[[Sequence[str]], None]  # FloatReference

    def calibrate(self, method: str = "minmax") -> Iterator[Progress]:
        """Gather activation statistics on the calibration samples (progress per activation)."""
        yield from self.prepare()
        ref = self._ensure_ref()
        self.method = method_of(method)
        self._ranges.clear()
        self._local.clear()
        self._acc.clear()
        self._prefix_values.clear()
        acts = list(
            dict.fromkeys(a for layer in rewrite.main_layers(self.info) for a in layer.activations)
        )
        minmax = self._minmax if self.method is CalibrationMethod.MINMAX else {}
        if not minmax:  # values are read and sampled: first the float runs' buffers go
            self._arena.maybe_release()
        for i, a in enumerate(acts):
            if a not in self._stats and a in minmax:
                # The float reference merged each float tensor's min and max over the
                # calibration feeds as it ran (reference._finite): the statistics min-max
                # needs, without reading the values back (most are spilled to the scratch
                # file: on the generated CRNN 36 MiB read back through memory maps, 11 ms of
                # CPU and 1000 page faults per calibration).
                self._stats[a] = ActivationStats(*minmax[a], None)
            elif a not in self._stats:
                values = [ref[a][j] for j in self.data.calibration]
                if np.asarray(values[0]).dtype.kind == "f":
                    sample = self.method is not CalibrationMethod.MINMAX
                    self._stats[a] = ActivationStats.of(values, a, sample=sample)
            yield Progress(i + 1, len(acts), f"calibrating {a}")

    def target_range(self, q: targets.TensorQuantizer) -> tuple[Any, Any]:
        """Calibrated (lo, hi) of a deployment target's tensor quantizer."""
        self._ensure_stats([q.range_of])
        return self._scaled(q, self.activation_range(q.range_of, q.format))

    @staticmethod
    def _scaled(q: targets.TensorQuantizer, rng: tuple[Any, Any]) -> tuple[Any, Any]:
        """``rng`` times the quantizer's positive ``range_scale`` (a Div/Mul by a constant)."""
        if q.range_scale == 1.0:
            return rng
        return rng[0] * q.range_scale, rng[1] * q.range_scale

    def target_ranges(
        self, placed: Mapping[str, targets.TensorQuantizer]
    ) -> dict[str, tuple[Any, Any]]:
        """Every target quantizer's range, their statistics gathered in one float session
        (one each cost a session and a whole-model run per tensor: minutes on a detector)."""
        self._ensure_stats([q.range_of for q in placed.values()])
        return {t: self.target_range(q) for t, q in placed.items()}

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
        if self.method is CalibrationMethod.MINMAX:  # the float run's min and max suffice
            self._measure_later(rest)  # those the float reference left for later
            for n in [n for n in rest if n in self._minmax]:
                self._stats[n] = ActivationStats(*self._minmax[n], None)
                rest.remove(n)
        self._collect_stats(rest)

    def _collect_stats(self, rest: Sequence[str]) -> None:
        if not rest:
            return
        sim = rewrite.build_sim(self.model.graph_proto, self.info, {}, expose=rest)
        self.model.materialize(sim.model)
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

    def channel_values(self, layer: Layer, act: str) -> int:
        """How many calibration values one channel of ``act`` holds (the sample a per-channel
        range of ``layer``'s input rests on): each calibration feed's values over its
        channel count, summed. A MatMul on [rows, features] gets one value per row."""
        ref = self._ensure_ref()
        axis = self.activation_axis(layer, act)
        count = 0
        for j in self.data.calibration:
            v = np.asarray(ref.value(act, j))
            if v.ndim > axis and v.shape[axis]:
                count += v.size // v.shape[axis]
        return count

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
                    try:
                        values = [ref[act][j] for j in self.data.calibration]
                    except (KeyError, EngineError):  # not kept: a target's tensor
                        self._collect_stats([act])
                    else:
                        self._stats[act] = ActivationStats.of(values, act)
                    stats = self._stats[act]
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
            return self._scaled(q, self.activation_range(q.range_of, fmt))
        return self.activation_range(act, fmt)

    def planned_range(
        self,
        layer: Layer,
        choice: LayerChoice,
        act: str,
        fmt: Format,
        placed: Mapping[str, targets.TensorQuantizer],
    ) -> tuple[Any, Any]:
        """The range of ``layer``'s quantizer on ``act`` under ``choice``: of the scaled
        activation under SmoothQuant (bitlens.core.recovery.smooth), else :meth:`layer_range`."""
        if choice.recovery is Recovery.SMOOTH:
            return self.recovery.smoothed_range(layer, choice, act, fmt)  # type: ignore[attr-defined]
        return self.layer_range(act, fmt, placed)

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

    def _param_feeds(
        self,
        choices: Mapping[str, LayerChoice],
        placed: Mapping[str, targets.TensorQuantizer] | None = None,
    ) -> dict[str, np.ndarray]:
        placed = placed or {}
        feeds: dict[str, np.ndarray] = {}
        for t, (lo, hi) in self.target_ranges(placed).items():
            q = placed[t]
            kind = quantizers.target_kind(self.info.opset, self.qdq_quantizers)
            feeds.update(self._params(kind, rewrite.extra_prefix(t), q.format, lo, hi))
        for name, choice in choices.items():
            fmt = choice.activation
            if fmt is None:
                continue
            kind = self._engine_kind(fmt, choice.dynamic)
            assert kind is not None
            layer = self.info.layer(name)
            for k, act in enumerate(layer.activations):
                bound = self.bind_activation(layer, act, fmt)
                lo, hi = (
                    (0.0, 0.0)
                    if choice.dynamic
                    else self.planned_range(layer, choice, act, bound, placed)
                )
                feeds.update(self._params(kind, rewrite.act_prefix(name, k), bound, lo, hi))
        return feeds

    def _params(self, kind: str, prefix: str, fmt: Format, lo: Any, hi: Any):
        """quantizers.param_feeds, kept per (kind, prefix, format, range) where the range is
        two floats: every plan feeds every layer's parameters, and computing them anew cost
        25-40 ms per evaluation on a 46-layer CRNN (a tenth of its float run)."""
        if not (isinstance(lo, float) and isinstance(hi, float)):
            return quantizers.param_feeds(kind, prefix, fmt, lo, hi)
        cache = self._param_cache
        key = (kind, prefix, fmt, lo, hi)
        found = cache.get(key)
        if found is None:
            if len(cache) >= PARAM_ENTRIES:
                cache.clear()
            found = cache[key] = quantizers.param_feeds(kind, prefix, fmt, lo, hi)
        return found
