"""The search's state: evaluating whole plans (cached) and what each plan's file costs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from bitlens.core import lstm_kernel
from bitlens.core.engine import Engine
from bitlens.core.errors import SearchError
from bitlens.core.formats import Format
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice, Plan, validate_choice
from bitlens.core.recovery import Recovery
from bitlens.core.results import Progress
from bitlens.core.search.deployed import DeployedErrors, Part, Scored, score
from bitlens.core.search.filesize import FileSizes
from bitlens.core.search.guard import Split, effective_count, labels_of, split_feeds
from bitlens.core.search.hull import _Ladder
from bitlens.core.search.latency import Speed, plan_kernels
from bitlens.core.search.measures import output_error, padded_pair
from bitlens.core.search.options import SearchOptions
from bitlens.core.search.passes import Shared
from bitlens.core.search.points import Point, Sensitivity
from bitlens.core.search.recovered import Recovered, parse_methods
from bitlens.core.targets import ORT_CPU
from bitlens.core.usermetric import Metric, concat_outputs, reference_outputs
from bitlens.core.weights import stored_bytes


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
    base_act: Format | None  # the base activation format (None: activations stay float)
    unrun: tuple[str, ...] = ()  # layers the feeds never ran, kept at W8A8 (unexercised.py)

    def __init__(
        self,
        engine: Engine,
        options: SearchOptions,
        split: Split | None = None,
        shared: Shared | None = None,
    ):
        self.engine = engine
        # what the search's passes measure alike, measured once (core/search/passes.py)
        self.shared = shared if shared is not None else Shared()
        self.opts = options
        self.info = engine.info
        self.rng = np.random.default_rng(options.seed)
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
        self.size = FileSizes(engine, self.shared)  # the accounting of exported file sizes
        # recovery methods the search may give a layer, and what each (layer, format) got
        self.recovery_methods = parse_methods(options.recovery)
        self.recov: dict[str, dict[Format, Recovered]] = {}
        # int8 formats on the file's own grid, offered only to the layers whose weights the
        # file stores as int8 codes on them (grid_formats)
        self.grid_layers: dict[Format, frozenset[str]] = {}
        self.deployed: DeployedErrors | None = None  # made when first needed
        # evaluation feeds fitted and held back (size budgets), and the float model's
        # outputs on each part (set by the run, like ``ref``)
        evaluation = () if engine.data is None else engine.data.evaluation
        checked = options.budget.by_size and options.check_export
        fraction = options.check_fraction if checked else 0.0
        self.split: Split = split or split_feeds(evaluation, fraction, options.seed)
        self.fit_part: Part
        self.check_part: Part | None = None
        self.references: list[Point] = []  # float and the presets, once evaluated
        self.notes: list[str] = []  # what the result says about its choice
        # the latency limit and its locked layers (core/search/latency.py; None: not steered)
        self.speed: Speed | None = None
        self._latency: dict[Plan, float] = {}

    # -- evaluation ------------------------------------------------------------------------
    def _error(self, got: Mapping[str, np.ndarray]) -> float:
        return output_error(self.ref, got, self.engine.label_outputs)

    @property
    def before_pick(self) -> bool:
        """Whether an output whose rows a TopK/NMS picks is compared before the pick
        (Engine.measured_on): unless the user's metric reads the outputs themselves."""
        return self.opts.metric is None

    def _outputs(self, plan: Plan, feeds) -> dict[str, list[np.ndarray]]:
        return self.engine.run_outputs(plan, feeds, before_pick=self.before_pick)

    def set_parts(self) -> None:
        """The float model's outputs and the labels on the fitted and held-back feeds:
        ``ref`` and ``labels`` are the fitted part's, which every plan is measured on."""
        data = self.engine.data
        parts = []
        for feeds in (self.split.fit, self.split.check):
            if not feeds:
                ref = {}
            elif feeds == tuple(data.evaluation):
                ref = reference_outputs(self.engine, self.before_pick)  # cached per engine
            else:
                float_plan = Plan(self.info)
                ref = concat_outputs(self._outputs(float_plan, feeds))
            parts.append(Part(feeds, ref, labels_of(data, feeds)))
        self.fit_part = parts[0]
        self.check_part = parts[1] if self.split.check else None
        self.ref, self.labels = self.fit_part.reference, self.fit_part.labels

    def simulated_check(self, plan: Plan) -> Scored | None:
        """Output error and metric of ``plan``'s simulation on the held-back feeds."""
        part = self.check_part
        return None if part is None else self.simulated_on(plan, part)

    def simulated_on(self, plan: Plan, part: Part) -> Scored:
        """Output error and metric of ``plan``'s simulation on ``part``'s feeds."""
        self.evaluations += 1
        got = concat_outputs(self._outputs(plan, part.feeds))
        return score(got, part, self.metric, self.engine.label_outputs)

    def effective(self, plan: Plan) -> float:
        """How many numbers carry ``plan``'s simulated output error on every evaluation
        feed, fitted and held back (guard.effective_count)."""
        errors = []
        for part in (self.fit_part, self.check_part):
            if part is None or not part.feeds:
                continue
            got = concat_outputs(self._outputs(plan, part.feeds))
            self.evaluations += 1
            for name, ref in part.reference.items():
                if np.issubdtype(ref.dtype, np.floating):
                    # zero-padded where the output's length depends on the data
                    r, g = padded_pair(ref, got[name])
                    errors.append(np.asarray(g, np.float64) - r)
        return effective_count(errors)

    def _measure(self, plan: Plan) -> tuple[float, float | None]:
        hit = self.shared.measured.get(plan)
        if hit is not None:
            return hit
        # from the values kept upstream of the plan's first change (plans differ in a layer)
        got = concat_outputs(
            self.engine.plan_outputs(plan, self.split.fit, before_pick=self.before_pick)
        )
        self.evaluations += 1
        metric = None if self.metric is None else self.metric(got, self.ref, self.labels)
        hit = self.shared.measured[plan] = (self._error(got), metric)
        return hit

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
        # each weight once, in the format its file stores it in (shared_weights.stored_readers)
        weight_bytes = stored_bytes(
            self.info.layers, {n: plan[n].weight for n in self.info.layer_names},
            lstm_kernel.kernel_layers(plan),
        )[1]
        nbytes = self.size.file_bytes(plan)
        real = self.size.real_if_near(plan, nbytes)
        p = Point(plan, nbytes if real is None else real, weight_bytes, error, metric, label, real)
        self._cache[plan] = p
        if label == "search":
            self.tried.append(p)
        return p

    def _tick(self, message: str) -> Progress:
        self.done += 1
        self.total = max(self.total, self.done + 1)
        return Progress(self.done, self.total, message)

    # -- speed -------------------------------------------------------------------------------
    def latency_of(self, plan: Plan) -> float | None:
        """``plan``'s predicted deployed time against the float model's (None: not steered)."""
        if self.speed is None:
            return None
        hit = self._latency.get(plan)
        if hit is None:
            hit = self._latency[plan] = self.speed.predict(plan_kernels(self.engine, plan))
        return hit

    def quick_enough(self, plan: Plan) -> bool:
        """Within the latency limit (always, where speed is not steered)."""
        t = self.latency_of(plan)
        return t is None or t <= self.speed.limit + 1e-9  # type: ignore[union-attr]

    def locked(self, name: str) -> bool:
        """A layer that keeps its integer kernel: formats that lose it are not offered."""
        return self.speed is not None and name in self.speed.locked

    # -- plans -------------------------------------------------------------------------------
    def plan_for(self, choices: Mapping[str, LayerChoice]) -> Plan:
        """A plan of these choices at the search's deployment target. On ``ort-cpu`` an LSTM
        whose choice fits ONNX Runtime's DynamicQuantizeLSTM runs as it, as in the presets
        (core/lstm_kernel.py): the search's plans otherwise ran it float, slower than the
        W8A8 they are compared with. A pinned choice is kept as the user wrote it."""
        if self.opts.target == ORT_CPU:
            choices = {
                n: c if n in self.pins else lstm_kernel.kernel_choice(self.info.layer(n), c)
                for n, c in choices.items()
            }
        return Plan(self.info, choices, self.opts.target)

    def plan_of(self, weights: Mapping[str, Format | None]) -> Plan:
        choices: dict[str, LayerChoice] = {}
        for layer in self.info.layers:
            name = layer.name
            if name in self.pins:
                choices[name] = self.pins[name]
            else:
                w = weights.get(name)
                choices[name] = LayerChoice(
                    w, self.act.get(name), recovery=self._recovery_of(name, w)
                )
        return self.plan_for(choices)

    def _recovery_of(self, name: str, fmt: Format | None) -> Recovery | None:
        """The recovery method the search gives ``name``'s weights in ``fmt`` (None: plain)."""
        hit = self.recov.get(name, {}).get(fmt) if fmt is not None else None
        return None if hit is None else hit.method

    # -- size accounting ---------------------------------------------------------------------
    def _reaccount(self) -> None:
        """Sizes of the plans already evaluated, after the accounting learnt more."""
        for plan, p in list(self._cache.items()):
            nbytes = self.size.file_bytes(plan)
            real = self.size.real_if_near(plan, nbytes)
            self._cache[plan] = replace(
                p, file_bytes=nbytes if real is None else real, exported_bytes=real
            )
        self.tried = [self._cache[p.plan] for p in self.tried]
        if hasattr(self, "uniform"):
            self.uniform = [(self._cache[p.plan], acts) for p, acts in self.uniform]

    def _bytes_of(self, weights: Mapping[str, Format | None]) -> int:
        """The accounted file of these weights in the current activation context."""
        return self.size.file_bytes(self.plan_of(weights))

    def _lb(self, layer: Layer, fmt: Format | None) -> int:
        """A layer's bytes with weights in ``fmt`` in the current activation context."""
        return self.size.layer_bytes(layer, fmt, self.act.get(layer.name))
