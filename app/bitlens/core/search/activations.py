"""Activation choices: the base format everywhere, free 8-bit swaps, a few wide exceptions
where the measured gain is largest."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

from bitlens.core.formats import Family, Format, Granularity, parse_format
from bitlens.core.model.types import Layer
from bitlens.core.plan import Plan
from bitlens.core.results import Progress
from bitlens.core.search.candidates import _fits, _wider
from bitlens.core.search.options import FLOAT_NAME
from bitlens.core.search.points import Point, Sensitivity
from bitlens.core.search.weightpath import WeightPath


class ActivationChoice(WeightPath):
    def _activations(
        self, base: Format, formats: Sequence[Format | None], layers: Sequence[Layer]
    ) -> Generator[Progress | Point, None, None]:
        if not layers:
            return
        free = [
            f for f in formats
            if f is not None and f != base and f.family is Family.INT
            and f.granularity is Granularity.TENSOR and f.bits == base.bits
            and base.family is Family.INT
        ]  # fmt: skip
        wide = [f for f in formats if f is None or _wider(f, base)]
        # narrower activations save no file bytes and only add error: never chosen
        for layer in layers:
            self.act[layer.name] = base
        base_err = self.point(self.plan_of(self.ctx_weights), "search").error
        yield self._tick("activations at the base format")
        for layer in layers:
            best, best_err = base, base_err
            for fmt in free:
                if not _fits(layer, fmt):
                    continue
                err, met = self._measure(self._with_act(layer.name, fmt))
                self.sens.append(Sensitivity(layer.name, "activation", fmt.name, err, met, 0))
                if err < best_err:
                    best, best_err = fmt, err
            self.act[layer.name] = best
            yield self._tick(f"sensitivity: {layer.name} activation 8-bit")
        ctx = self.point(self.plan_of(self.ctx_weights), "search")
        # Swaps each better alone can be worse together, or with coarser weights (int8 sym
        # after a Relu gives up a bit that int8 weights hide and int4 ones do not): keep
        # them only if they also help with per-channel int4 weights.
        int4 = parse_format("int4 sym ch")
        coarse = {
            name: int4 if any(f == int4 for _b, _w, f in c) else w
            for (name, c), w in zip(self.cands.items(), self.ctx_weights.values(), strict=True)
        }
        swapped = dict(self.act)
        with_swaps = self.point(self.plan_of(coarse), "search").error
        for layer in layers:
            self.act[layer.name] = base
        without = self.point(self.plan_of(coarse), "search").error
        if ctx.error < base_err and with_swaps < without:
            self.act = swapped
        else:
            ctx = self.point(self.plan_of(self.ctx_weights), "search")
        k = self.opts.wide_activations
        k = max(1, round(0.1 * len(layers))) if k is None else k
        if k <= 0 or not wide:
            return
        # Wide candidates that keep the integer quantizer reuse the same session; the others
        # (float, fp16...) build one session per layer (memory the size of the model's), so
        # they are tried only on the two layers where the integer ones gain most.
        same = [f for f in wide if f is not None and f.family is Family.INT]
        other = [f for f in wide if f not in same]
        if None in other:
            # float has no error, so a float cast (fp16, bf16) can only tie with it: each is
            # a new session structure per layer, so only float is tried
            other = [None]
        gains: dict[str, tuple[float, Format | None]] = {}
        for layer in layers:
            for fmt in same:
                if not _fits(layer, fmt):
                    continue
                err, met = self._measure(self._with_act(layer.name, fmt))
                self.sens.append(Sensitivity(layer.name, "activation", fmt.name, err, met, 0))
                self._keep_gain(gains, layer.name, ctx.error, err, fmt)
            yield self._tick(f"sensitivity: {layer.name} wide activation")
        ranked = self._ranked(layers, gains)
        tops = ranked[:2] if same else ranked
        for name in tops:
            for fmt in other:
                err, met = self._measure(self._with_act(name, fmt))
                label = FLOAT_NAME if fmt is None else fmt.name
                self.sens.append(Sensitivity(name, "activation", label, err, met, 0))
                self._keep_gain(gains, name, ctx.error, err, fmt)
            yield self._tick(f"sensitivity: {name} float activation")
        chosen = [n for n in self._ranked(layers, gains) if gains[n][0] > 0][:k]
        saved = dict(self.act)
        self.narrow = {name: self.act[name] for name in chosen}
        for name in chosen:
            self.act[name] = gains[name][1]
        if chosen and self.point(self.plan_of(self.ctx_weights), "search").error > ctx.error:
            self.act, chosen = saved, []  # together they do not help: keep the context
        self.wide = chosen

    def _with_act(
        self, name: str, fmt: Format | None, weights: Mapping[str, Format | None] | None = None
    ) -> Plan:
        saved = self.act[name]
        self.act[name] = fmt
        try:
            return self.plan_of(self.ctx_weights if weights is None else weights)
        finally:
            self.act[name] = saved

    @staticmethod
    def _keep_gain(gains, name: str, ctx_err: float, err: float, fmt: Format | None) -> None:
        gain = ctx_err * ctx_err - err * err
        if name not in gains or gain > gains[name][0]:
            gains[name] = (gain, fmt)

    def _ranked(self, layers: Sequence[Layer], gains: Mapping[str, tuple[float, Any]]) -> list[str]:
        tie = {layer.name: float(self.rng.random()) for layer in layers}
        names = [layer.name for layer in layers if layer.name in gains]
        return sorted(names, key=lambda n: (-gains[n][0], tie[n]))
