"""The search's state: evaluating whole plans (cached) and what each plan's file costs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from bitlens.core.engine import Engine
from bitlens.core.errors import SearchError
from bitlens.core.export.exporter import integer_kernel_candidate, integer_kernel_layers
from bitlens.core.formats import Format
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice, Plan, validate_choice
from bitlens.core.results import Progress
from bitlens.core.search.hull import _Ladder
from bitlens.core.search.measures import file_bytes_of, output_error
from bitlens.core.search.options import SearchOptions
from bitlens.core.search.points import Point, Sensitivity
from bitlens.core.usermetric import Metric, concat_outputs
from bitlens.core.weights import weight_bytes_after


class SearchState:
    """Evaluation, plans and size accounting; the steps of the search build on it."""

    # set by the run (runner.py) before the steps that read them
    ref: dict[str, np.ndarray]
    labels: np.ndarray | None
    metric: Metric | None
    float_metric: float | None
    wfmts: list[Format]
    wlayers: list[Layer]
    cands: dict[str, list[tuple[int, float, Format]]]
    measured: dict[tuple[str, Format], tuple[float, float | None]]
    ctx_weights: dict[str, Format | None]
    uniform: list[tuple[Point, dict[str, Format | None]]]
    ladders: dict[str, _Ladder]
    moves: list[str]

    def __init__(self, engine: Engine, options: SearchOptions):
        self.engine = engine
        self.opts = options
        self.info = engine.info
        self.rng = np.random.default_rng(options.seed)
        self.fixed_bytes, self.float_weight_bytes = file_bytes_of(engine)
        self.evaluations = 0
        self.done = 0
        self.total = 1
        self._cache: dict[Plan, Point] = {}
        self.tried: list[Point] = []
        self.sens: list[Sensitivity] = []
        for name, choice in options.pins.items():
            try:
                validate_choice(self.info.layer(name), choice)
            except KeyError:
                raise SearchError(f"pinned layer {name!r} is not in the model") from None
        self.pins = dict(options.pins)
        self.act: dict[str, Format | None] = {}  # activation choice per layer (pins aside)
        self.wide: list[str] = []
        self.narrow: dict[str, Format | None] = {}  # the wide layers' choice before widening
        # what the export writes around the weights, per format / quantizer / integer group
        self.w_overhead: dict[Format, int] = {}
        self.a_overhead = 0
        self.k_overhead: dict[str, int] = {}
        self.act_extra: dict[tuple[str, Format | None], int] = {}  # wide activations

    # -- evaluation ------------------------------------------------------------------------
    def _error(self, got: Mapping[str, np.ndarray]) -> float:
        return output_error(self.ref, got)

    def _measure(self, plan: Plan) -> tuple[float, float | None]:
        got = concat_outputs(self.engine.run_outputs(plan))
        self.evaluations += 1
        metric = None if self.metric is None else self.metric(got, self.ref, self.labels)
        return self._error(got), metric

    def point(self, plan: Plan, label: str = "search") -> Point:
        hit = self._cache.get(plan)
        if hit is not None:
            if label == "search" and hit.label != "search":
                # a preset the search reached on its own: one of its plans too
                hit = replace(hit, label="search")
                self._cache[plan] = hit
                self.tried.append(hit)
            return hit
        error, metric = self._measure(plan)
        weight_bytes = sum(
            weight_bytes_after(layer, plan[layer.name].weight) for layer in self.info.layers
        )
        p = Point(plan, self._file_bytes(plan), weight_bytes, error, metric, label)
        self._cache[plan] = p
        if label == "search":
            self.tried.append(p)
        return p

    def _tick(self, message: str) -> Progress:
        self.done += 1
        self.total = max(self.total, self.done + 1)
        return Progress(self.done, self.total, message)

    # -- plans -------------------------------------------------------------------------------
    def plan_of(self, weights: Mapping[str, Format | None]) -> Plan:
        choices: dict[str, LayerChoice] = {}
        for layer in self.info.layers:
            name = layer.name
            if name in self.pins:
                choices[name] = self.pins[name]
            else:
                choices[name] = LayerChoice(weights.get(name), self.act.get(name))
        return Plan(self.info, choices)

    # -- size accounting ---------------------------------------------------------------------
    def _file_bytes(self, plan: Plan) -> int:
        """The exported file's size: weights plus what the export writes around them."""
        total = self.fixed_bytes
        for layer in self.info.layers:
            w = plan[layer.name].weight
            total += weight_bytes_after(layer, w) + (self.w_overhead.get(w, 0) if w else 0)
        total += self.a_overhead * sum(1 for c in plan.choices.values() if c.activation)
        if self.k_overhead:
            for name in integer_kernel_layers(self.info, plan):
                total += self.k_overhead.get(self.info.layer(name).op_type, 0)
        total += sum(v for (n, fmt), v in self.act_extra.items() if plan[n].activation == fmt)
        return total

    def _reaccount(self) -> None:
        """Sizes of the plans already evaluated, after the accounting learnt more."""
        for plan, p in list(self._cache.items()):
            self._cache[plan] = replace(p, file_bytes=self._file_bytes(plan))
        self.tried = [self._cache[p.plan] for p in self.tried]

    def _bytes_of(self, weights: Mapping[str, Format | None]) -> int:
        total = self.fixed_bytes
        for layer in self.info.layers:
            if layer.name in self.pins:
                total += self._lb(layer, self.pins[layer.name].weight)
                total += self.a_overhead if self.pins[layer.name].activation else 0
            else:
                total += self._lb(layer, weights.get(layer.name))
                total += self.a_overhead if self.act.get(layer.name) else 0
                total += self.act_extra.get((layer.name, self.act.get(layer.name)), 0)
        return total

    def _lb(self, layer: Layer, fmt: Format | None) -> int:
        """A layer's weight bytes in ``fmt`` plus the graph the export adds for the format."""
        if fmt is None:
            return layer.nbytes
        extra = self.w_overhead.get(fmt, 0)
        if self.k_overhead and integer_kernel_candidate(
            layer, LayerChoice(fmt, self.act.get(layer.name))
        ):
            extra += self.k_overhead.get(layer.op_type, 0)
        return weight_bytes_after(layer, fmt) + extra
