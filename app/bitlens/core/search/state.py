"""The search's state: evaluating whole plans (cached) and what each plan's file costs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from bitlens.core.engine import Engine
from bitlens.core.errors import BitlensError, SearchError
from bitlens.core.export.accounting import ExportSize, predict
from bitlens.core.export.exporter import (
    ExportOptions,
    Prepared,
    _needed_opset,
    integer_kernel_candidate,
    integer_kernel_layers,
    preflight,
)
from bitlens.core.formats import Format
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice, Plan, validate_choice
from bitlens.core.results import Progress, drain
from bitlens.core.search.hull import _Ladder
from bitlens.core.search.measures import file_bytes_of, output_error
from bitlens.core.search.options import SearchOptions
from bitlens.core.search.points import Point, Sensitivity
from bitlens.core.search.sizes import LearnedSizes
from bitlens.core.usermetric import Metric, concat_outputs
from bitlens.core.weights import weight_bytes_after

# Plans the accounting puts this close to a size budget are measured by a real export: a
# few hundred bytes decide between a preset and the plan that beats it at its size.
NEAR_MIN_BYTES = 512
NEAR_FRACTION = 0.02  # the widest window, of the limit
NEAR_RECENT = 4  # the window follows the accounting's misses on the last exports


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
        # Size budgets: plans whose accounted size is within ``near`` bytes of ``limit`` are
        # exported in memory (cached per plan) and carry their real size; the accounting's
        # per-format overheads miss a few hundred bytes per file (scales that grow with a
        # layer's width, integer-kernel groups that change with neighbours), enough to hide
        # the plans that beat a preset at its own size.
        self.limit: int | None = None
        self.near = 0
        self._exported: dict[Plan, int] = {}
        self._prepared: dict[int, Prepared | BitlensError] = {}
        self.unexportable: dict[Plan, str] = {}  # plan -> why its export failed
        self.misses: list[int] = []  # how far the accounting was from each real export
        self.sizes = LearnedSizes()

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
        nbytes = self._file_bytes(plan)
        real = self._real_size_if_near(plan, nbytes)
        p = Point(plan, nbytes if real is None else real, weight_bytes, error, metric, label, real)
        self._cache[plan] = p
        if label == "search":
            self.tried.append(p)
        return p

    def exported(self, plan: Plan) -> int | None:
        """The real size of ``plan``'s export (built in memory once per plan); what each
        layer costs in it is learnt for the accounting. None: the plan cannot be exported
        (e.g. it needs an opset the model cannot be upgraded to), and no size budget takes
        it (the reason is kept in ``unexportable``)."""
        if plan in self.unexportable:
            return None
        hit = self._exported.get(plan)
        if hit is None:
            try:
                size, opset = self._export(plan)
            except BitlensError as exc:
                self.unexportable[plan] = str(exc)
                return None
            guess = self._file_bytes(plan)
            self.misses.append(abs(size.file_bytes - guess))
            base = self.fixed_bytes + self.float_weight_bytes
            self.sizes.learn(
                plan,
                size,
                integer_kernel_layers(self.info, plan),
                opset,
                self._choices(plan),
                base,
                self._estimate,
            )
            hit = self._exported[plan] = size.file_bytes
            self._update_near()
        return hit

    def _export(self, plan: Plan) -> tuple[ExportSize, int]:
        kernels = integer_kernel_layers(self.info, plan, self.engine.placement(plan))
        opset = self._opset(plan)
        # the opset conversion (a model copy, verified by two runs) once per opset, and
        # its failure too
        prepared = self._prepared.get(opset)
        if prepared is None:
            try:
                prepared = preflight(self.engine, plan)
            except BitlensError as exc:
                prepared = exc
            self._prepared[opset] = prepared
        if isinstance(prepared, BitlensError):
            raise prepared
        prepared = replace(prepared, kernels=frozenset(kernels))
        return drain(predict(self.engine, plan, prepared=prepared)), opset

    def _update_near(self) -> None:
        """How close to the limit a plan must be to be exported: twice the accounting's
        recent misses (it learns with every export), within fixed bounds."""
        if self.limit is None:
            return
        widest = round(NEAR_FRACTION * self.limit)
        recent = 2 * max(self.misses[-NEAR_RECENT:], default=widest)
        self.near = max(NEAR_MIN_BYTES, min(widest, recent))

    def _real_size_if_near(self, plan: Plan, accounted: int) -> int | None:
        if self.limit is None or abs(accounted - self.limit) > self.near:
            return self._exported.get(plan)
        return self.exported(plan)

    def _tick(self, message: str) -> Progress:
        self.done += 1
        self.total = max(self.total, self.done + 1)
        return Progress(self.done, self.total, message)

    # -- plans -------------------------------------------------------------------------------
    def plan_for(self, choices: Mapping[str, LayerChoice]) -> Plan:
        """A plan of these choices at the search's deployment target."""
        return Plan(self.info, choices, self.opts.target)

    def plan_of(self, weights: Mapping[str, Format | None]) -> Plan:
        choices: dict[str, LayerChoice] = {}
        for layer in self.info.layers:
            name = layer.name
            if name in self.pins:
                choices[name] = self.pins[name]
            else:
                choices[name] = LayerChoice(weights.get(name), self.act.get(name))
        return self.plan_for(choices)

    # -- size accounting ---------------------------------------------------------------------
    def _estimate(self, name: str, choice: LayerChoice, kernel: bool) -> int:
        """What the per-format overheads say ``name`` in ``choice`` adds to the file against
        its float weights (negative: it saves), less the constants its format's layers
        share (counted once per file)."""
        layer = self.info.layer(name)
        w, a = choice.weight, choice.activation
        net = 0
        if w is not None:
            net += weight_bytes_after(layer, w) - layer.nbytes
            net += self.w_overhead.get(w, 0) - self.sizes.shared.get(w, 0)
        if a is not None:
            net += self.a_overhead
        if kernel:
            net += self.k_overhead.get(layer.op_type, 0)
        return net + self.act_extra.get((name, a), 0)

    def _net(self, layer: Layer, choice: LayerChoice, kernel: bool) -> int:
        """The estimate, corrected by what real exports showed of this layer's choice."""
        return self._estimate(layer.name, choice, kernel) + self.sizes.layer(
            layer.name, choice, kernel
        )

    def _file_bytes(self, plan: Plan) -> int:
        """The exported file's size: weights plus what the export writes around them."""
        kernels = integer_kernel_layers(self.info, plan)
        total = self.fixed_bytes + self.float_weight_bytes
        total += self.sizes.shared_bytes({c.weight for c in plan.choices.values()})
        for layer in self.info.layers:
            total += self._net(layer, plan[layer.name], layer.name in kernels)
        return total + self.sizes.rest(self._opset(plan), self._choices(plan))

    def _choices(self, plan: Plan) -> tuple[LayerChoice, ...]:
        return tuple(plan[name] for name in self.info.layer_names)

    def _opset(self, plan: Plan) -> int:
        """The opset the export needs for ``plan`` (it converts the model to at least that)."""
        kernels = integer_kernel_layers(self.info, plan, self.engine.placement(plan))
        return _needed_opset(self.engine, plan, ExportOptions(), kernels)

    def _reaccount(self) -> None:
        """Sizes of the plans already evaluated, after the accounting learnt more."""
        for plan, p in list(self._cache.items()):
            nbytes = self._file_bytes(plan)
            real = self._real_size_if_near(plan, nbytes)
            self._cache[plan] = replace(
                p, file_bytes=nbytes if real is None else real, exported_bytes=real
            )
        self.tried = [self._cache[p.plan] for p in self.tried]
        if hasattr(self, "uniform"):
            self.uniform = [(self._cache[p.plan], acts) for p, acts in self.uniform]

    def _bytes_of(self, weights: Mapping[str, Format | None]) -> int:
        """The accounted file of these weights in the current activation context."""
        return self._file_bytes(self.plan_of(weights))

    def _lb(self, layer: Layer, fmt: Format | None) -> int:
        """A layer's bytes with weights in ``fmt`` (its float weights for None), everything
        the export adds for the choice included, in the current activation context."""
        if fmt is None:
            return layer.nbytes
        choice = LayerChoice(fmt, self.act.get(layer.name))
        flt = LayerChoice(None, choice.activation)
        net = self._net(layer, choice, integer_kernel_candidate(layer, choice))
        return layer.nbytes + net - self._net(layer, flt, integer_kernel_candidate(layer, flt))
