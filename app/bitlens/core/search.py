"""Find a mixed-precision plan under a budget: sensitivities, greedy allocation, refinement.

Everything runs on the engine's public API (``run_outputs``, ``weight_error``,
``evaluate``), so its sessions, weight cache and calibration are reused. A
plan's error is the relative L2 error of the model outputs against float (root
mean square over the outputs); its size is the exported file's: the float
export, less the float weights the plan replaces, plus the planned weight
bytes, plus what the exporter writes around them (unpacking nodes, scales,
quantizers, integer-kernel groups, provenance). Under a size budget that
graph cost is measured once per search, by exporting one small layer in each
weight format, every activation at the base format, one integer-kernel group
per op type and each wide activation, to a temporary folder; on a small model
it is a large part of the file (2 KB per n-bit layer).

1. **Activations.** Activations cost no file bytes, so a search free to widen
   them would keep them all float. Every layer with a quantizable input starts
   at a base format (``uint8 asym``, ONNX Runtime's QDQ default); another
   8-bit per-tensor format is a free swap (same integer kernels); at most
   ``wide_activations`` layers keep a wider one (float, fp16, int16, per
   channel) where the measured gain is largest. They are measured in the
   context of int8 weights and every other activation at its choice; a set of
   swaps that is worse together than apart is dropped.
2. **Weight sensitivity.** Each layer's weights alone (every other layer
   float) are measured at two anchor formats (per-channel int8 and int4); the
   other candidates' output noise is predicted from their weight error times
   the measured output/weight noise ratio, and measured for real once the path
   shows which formats each layer takes near the budget.
3. **Greedy allocation.** Output noise powers of independent quantizers add
   approximately, so each layer's (bytes, noise) points are reduced to their
   lower convex hull and the layers are stepped down together, always taking
   the step that adds the least noise per byte saved (marginal analysis, as in
   classic bit allocation; AIMET's AMP and HAWQ-V3 order layers the same way:
   https://quic.github.io/aimet-pages/releases/latest/featureguide/mixed%20precision/amp.html,
   https://arxiv.org/abs/2011.10680). This gives a path of plans from float to
   the smallest.
4. **Refinement.** Errors do not add up exactly, so whole plans are evaluated
   for real: probes along the path and every candidate format applied
   uniformly (the front), then near the budget a local search that re-measures
   layers one step up or down in the context of the current plan and swaps
   bytes from where they cost the least error to where they buy the most. An
   error or metric budget bisects the path and then shaves bytes while the
   real figure holds. Under a size budget the chosen plan is exported to a
   temporary file; when the graph around the weights pushes it over, the
   search chooses again below.

Under a size budget the best plan maximizes the task metric (capped at the
float model's: more is noise), then minimizes the output error. The front is
every whole plan evaluated, reduced to its Pareto-optimal points: bytes up,
error strictly down. The seed breaks near-ties between layers, so a run is
reproducible.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bitlens.core import metrics
from bitlens.core.engine import Engine
from bitlens.core.errors import BitlensError, PlanError, SearchError
from bitlens.core.export.exporter import integer_kernel_candidate, integer_kernel_layers
from bitlens.core.formats import Family, Format, Granularity, parse_format
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice, Plan, validate_choice
from bitlens.core.results import Progress
from bitlens.core.usermetric import Metric, concat_outputs, default_metric, reference_outputs
from bitlens.core.weights import weight_bytes_after

# fp16, int16, int8 per channel, int7 to int5, int4 per channel and blocked, NF4/NF3 (normal
# quantiles per block of 64, QLoRA's data type: https://arxiv.org/abs/2305.14314), int3,
# int2, ternary, binary. Formats a layer cannot take are skipped for it.
DEFAULT_WEIGHT_FORMATS: tuple[str, ...] = (
    "fp16", "int16 sym ch", "int8 sym ch", "int7 sym ch", "int6 sym ch", "int5 sym ch",
    "int4 sym ch", "int4 asym blk32", "nf4 blk64", "int3 sym ch", "nf3 blk64", "int2 asym blk32",
    "tern ch", "bin ch",
)  # fmt: skip
FLOAT_NAME = "float"
DEFAULT_ACTIVATION_FORMATS: tuple[str, ...] = (
    FLOAT_NAME, "fp16", "int16 sym", "uint8 asym", "int8 sym", "uint8 asym ch", "int8 sym ch",
)  # fmt: skip
DEFAULT_BASE_ACTIVATION = "uint8 asym"
# Presets with 8-bit activations share the search's session structure; A16 presets (fp16
# activations everywhere) each cost the engine another session (about 1 GB on ResNet-50).
DEFAULT_REFERENCES: tuple[str, ...] = ("W8A8", "W4A8")


@dataclass(frozen=True)
class Budget:
    """Exactly one limit: file bytes, a size ratio, a maximum output error or a minimum metric."""

    max_bytes: int | None = None
    size_ratio: float | None = None  # of the float model's file size
    max_error: float | None = None  # relative L2 error of the outputs (0.01 = 1%)
    min_metric: float | None = None  # the task metric (higher is better)

    def __post_init__(self) -> None:
        given = [
            k for k in ("max_bytes", "size_ratio", "max_error", "min_metric")
            if getattr(self, k) is not None
        ]  # fmt: skip
        if len(given) != 1:
            raise SearchError(
                "give exactly one budget: max bytes, size ratio, max error or min metric"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise SearchError(f"max bytes must be positive, got {self.max_bytes}")
        if self.size_ratio is not None and not 0 < self.size_ratio <= 1:
            raise SearchError(f"size ratio must be in (0, 1], got {self.size_ratio}")
        if self.max_error is not None and not self.max_error > 0:
            raise SearchError(f"max error must be positive, got {self.max_error}")

    @property
    def by_size(self) -> bool:
        return self.max_bytes is not None or self.size_ratio is not None

    def describe(self) -> str:
        if self.max_bytes is not None:
            return f"at most {self.max_bytes} bytes"
        if self.size_ratio is not None:
            return f"at most {self.size_ratio:g} of the float size"
        if self.max_error is not None:
            return f"output error at most {self.max_error:g}"
        return f"metric at least {self.min_metric:g}"


@dataclass(frozen=True)
class SearchOptions:
    budget: Budget
    weight_formats: tuple[str, ...] = DEFAULT_WEIGHT_FORMATS
    activation_formats: tuple[str, ...] = DEFAULT_ACTIVATION_FORMATS
    base_activation: str | None = DEFAULT_BASE_ACTIVATION  # None: activations stay float
    wide_activations: int | None = None  # None: a tenth of the layers, at least one
    pins: Mapping[str, LayerChoice] = field(default_factory=dict)
    seed: int = 0
    front_probes: int = 10  # plans along the greedy path evaluated for the front
    refine_evaluations: int = 36  # whole-plan evaluations spent near the budget
    # Size budgets: export the chosen plan to a temporary file and, when the graph's own
    # overhead (unpacking nodes, quantizer parameters) pushes it over, choose again below.
    check_export: bool = True
    references: tuple[str, ...] = DEFAULT_REFERENCES  # presets evaluated for comparison
    metric: Metric | None = None  # None: accuracy when the data has labels


@dataclass(frozen=True)
class Sensitivity:
    """One (layer, choice) measured alone: output error, task metric, bytes saved."""

    layer: str
    kind: str  # "weight" or "activation"
    format: str  # "float" keeps float
    error: float  # relative L2 error of the outputs
    metric: float | None
    bytes_saved: int  # against float weights (0 for activations: they are not stored)


@dataclass(frozen=True)
class Point:
    """A whole plan, evaluated for real."""

    plan: Plan
    file_bytes: int  # the exported file's size by the plan's accounting
    weight_bytes: int  # bytes of the quantizable weights
    error: float  # relative L2 error of the outputs (root mean square over outputs)
    metric: float | None
    label: str  # "search", "float" or a preset name
    exported_bytes: int | None = None  # the real exported file, where it was checked

    @property
    def sqnr_db(self) -> float:
        return -20.0 * math.log10(self.error) if self.error > 0 else math.inf

    def summary(self) -> str:
        """One line per kind of change: how many layers at which weight format."""
        counts: dict[str, int] = {}
        acts: dict[str, int] = {}
        for choice in self.plan.choices.values():
            if choice.weight is not None:
                counts[choice.weight.name] = counts.get(choice.weight.name, 0) + 1
            if choice.activation is not None:
                acts[choice.activation.name] = acts.get(choice.activation.name, 0) + 1
        quantized = sum(counts.values())
        floats = sum(1 for layer in self.plan.info.layers if layer.weights) - quantized
        w = ", ".join(f"{n}× {f}" for f, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        a = ", ".join(f"{n}× {f}" for f, n in sorted(acts.items(), key=lambda kv: -kv[1]))
        parts = [f"weights: {w or 'all float'}" + (f", {floats} float" if w and floats else "")]
        parts.append(f"activations: {a or 'all float'}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "file_bytes": self.file_bytes,
            "weight_bytes": self.weight_bytes,
            "error": self.error,
            "sqnr_db": self.sqnr_db,
            "metric": self.metric,
            "exported_bytes": self.exported_bytes,
            "plan": self.plan.to_dict(),
        }


@dataclass(frozen=True)
class SearchResult:
    budget: Budget
    best: Point  # the plan within the budget
    front: tuple[Point, ...]  # bytes increasing, error strictly decreasing
    tried: tuple[Point, ...]  # every whole plan the search evaluated
    references: tuple[Point, ...]  # float and the uniform presets
    sensitivities: tuple[Sensitivity, ...]
    evaluations: int  # model runs over the evaluation samples, sensitivities included
    metric_name: str | None
    float_bytes: int
    wide_layers: tuple[str, ...]  # layers whose activations stay wider than the base
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget.describe(),
            "seed": self.seed,
            "metric": self.metric_name,
            "evaluations": self.evaluations,
            "float_bytes": self.float_bytes,
            "wide_activations": list(self.wide_layers),
            "best": self.best.to_dict(),
            "front": [p.to_dict() for p in self.front],
            "references": [p.to_dict() for p in self.references],
            "sensitivities": [vars(s) for s in self.sensitivities],
        }


def pareto_front(points: Iterable[Point]) -> tuple[Point, ...]:
    """The points no other point beats on both bytes and error; bytes up, error strictly down."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.file_bytes, p.error)):
        if not front or p.error < front[-1].error:
            front.append(p)
    return tuple(front)


def file_bytes_of(engine: Engine) -> tuple[int, int]:
    """(bytes of the model file that no plan changes, bytes of the float quantizable weights).

    The export stores the source model less the replaced float weights plus the planned
    ones (the fidelity report's ``file_expected``), so a plan's file size is the first
    figure plus its weight bytes.
    """
    total = engine.model.proto.ByteSize()
    weights = sum(layer.nbytes for layer in engine.info.layers)
    return total - weights, weights


def output_error(reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> float:
    """Relative L2 error of the outputs, root mean square over the model's outputs."""
    rel = []
    for name, ref in reference.items():
        e = metrics.tensor_error(ref, got[name])
        rel.append(e.rel_l2 if math.isfinite(e.rel_l2) else 1e9)
    return math.sqrt(sum(r * r for r in rel) / len(rel)) if rel else 0.0


def sensitivities(
    engine: Engine,
    weight_formats: Sequence[str],
    activation_formats: Sequence[str] = (),
    layers: Sequence[str] | None = None,
    metric: Metric | None = None,
) -> Generator[Progress, None, list[Sensitivity]]:
    """Each layer alone (every other layer float) with its weights in each weight format and
    its input activation in each activation format: output error, task metric (the user's,
    or accuracy with labels) and bytes saved. Formats a layer cannot take are skipped.
    Returns the entries worst first (highest output error)."""
    yield from engine.prepare()
    ref = reference_outputs(engine)
    labels = engine.data.eval_labels
    metric = metric or default_metric(ref, labels)
    wfmts = _parse_all(weight_formats, "weight") if weight_formats else []
    afmts = _parse_all(activation_formats, "activation") if activation_formats else []
    names = list(engine.info.layer_names if layers is None else layers)
    out: list[Sensitivity] = []
    for i, name in enumerate(names):
        layer = engine.info.layer(name)
        trials: list[tuple[str, str, LayerChoice, int]] = []
        for fmt in wfmts:
            if layer.weights and _fits_weight(layer, fmt):
                saved = layer.nbytes - weight_bytes_after(layer, fmt)
                trials.append(("weight", fmt.name, LayerChoice(fmt), saved))
        for fmt in afmts:
            if fmt is not None and _fits(layer, fmt):
                trials.append(("activation", fmt.name, LayerChoice(None, fmt), 0))
        for kind, label, choice, saved in trials:
            got = concat_outputs(engine.run_outputs(Plan(engine.info, {name: choice})))
            value = None if metric is None else metric(got, ref, labels)
            out.append(Sensitivity(name, kind, label, output_error(ref, got), value, saved))
        yield Progress(i + 1, len(names), f"sensitivity: {name}")
    out.sort(key=lambda e: -e.error)
    return out


def exported_size(engine: Engine, plan: Plan) -> int:
    """Bytes of the file ``plan`` exports to (the export built in memory, not written)."""
    from bitlens.core.export.accounting import predict

    gen = predict(engine, plan)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return int(stop.value.file_bytes)


def search(
    engine: Engine, options: SearchOptions
) -> Generator[Progress | Point, None, SearchResult]:
    """Run the search; yields Progress and every whole plan evaluated (for live plots).

    Cancel by not resuming the generator (or ``close()``); the engine stays usable.
    """
    kept = engine.max_sessions
    engine.max_sessions = min(kept, 2)  # many structures, one after the other: keep few
    try:
        return (yield from _Search(engine, options).run())
    finally:
        engine.max_sessions = kept


# -- the search ------------------------------------------------------------------------------


@dataclass
class _Ladder:
    """One layer's weight options on the lower convex hull, most bytes (float) first."""

    layer: Layer
    points: list[tuple[int, float, Format | None]]  # (bytes, predicted noise power, format)


class _Search:
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

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> Generator[Progress | Point, None, SearchResult]:
        engine, opts = self.engine, self.opts
        if engine.data is None:
            raise SearchError("the search runs the model: give it input data (or input sizes)")
        yield from engine.prepare()
        self.ref = reference_outputs(engine)
        self.labels = engine.data.eval_labels
        self.metric = opts.metric or default_metric(self.ref, self.labels)
        if opts.budget.min_metric is not None and self.metric is None:
            raise SearchError(
                "a minimum metric needs a metric: labelled data for a classifier, or --metric"
            )
        free = [layer for layer in self.info.layers if layer.name not in self.pins]
        wfmts = _parse_all(opts.weight_formats, "weight")
        afmts = _parse_all(opts.activation_formats, "activation")
        base = (
            None
            if opts.base_activation in (None, FLOAT_NAME)
            else parse_format(opts.base_activation)
        )
        act_layers = [
            layer for layer in free
            if base is not None and layer.activations and not layer.graph_path
        ]  # fmt: skip
        wlayers = [layer for layer in free if layer.weights]
        self.total = len(wlayers) * len(wfmts) + 3 * len(act_layers) + opts.front_probes
        self.total += opts.refine_evaluations + len(opts.references) + 2

        # 1. which formats each layer can take (numpy only: quantization and weight error),
        # and what the export adds around each
        wfmts = yield from self._measure_overheads(wlayers, wfmts, base)
        # references: float and presets, for the plot and the comparison
        refs = [self.point(Plan(self.info), FLOAT_NAME)]
        self.float_metric = refs[0].metric
        yield refs[0]
        for name in opts.references:
            refs.append(self.point(Plan.preset(self.info, name), name))
            yield refs[-1]
            yield self._tick(f"reference {name}")

        self.wfmts = wfmts
        self.wlayers = wlayers
        self.cands: dict[str, list[tuple[int, float, Format]]] = {
            layer.name: self._weight_candidates(layer, wfmts) for layer in wlayers
        }
        self.measured: dict[tuple[str, Format], tuple[float, float | None]] = {}
        # 2. activations: base everywhere, free 8-bit swaps, a few wide exceptions; measured
        # with 8-bit weights, the context a budget near W8A8 needs them in
        int8 = parse_format("int8 sym ch")
        self.ctx_weights: dict[str, Format | None] = {
            name: int8 if any(f == int8 for _b, _w, f in c) else None
            for name, c in self.cands.items()
        }
        if base is not None:
            yield from self._activations(base, afmts, act_layers)
            yield from self._measure_wide_costs()
        # 3. weights: each layer alone at two anchor formats; the rest predicted from the
        # weight error until the path shows which formats matter, then measured there
        for layer in wlayers:
            for fmt in _anchors(self.cands[layer.name]):
                self._measure_weight(layer, fmt)
            yield self._tick(f"sensitivity: {layer.name} weights")
        self._rebuild()
        # every candidate format on every layer: uniform plans, on the plot and as starts;
        # with and without the wide activations (chosen with int8 weights, they can hurt
        # with coarser ones: the 8-bit quantizer's clipping also stops upstream errors)
        self.uniform: list[tuple[Point, dict[str, Format | None]]] = []
        wide_acts = dict(self.act)
        configs = [wide_acts]
        if self.wide:
            configs.append({**wide_acts, **{n: self.narrow[n] for n in self.wide}})
        for fmt in wfmts:
            for acts in configs:
                self.act = acts
                self.uniform.append((self.point(self.plan_of(self._uniform(fmt))), acts))
                yield self.uniform[-1][0]
            yield self._tick(f"uniform {fmt.name}")
        self.act = wide_acts
        if opts.budget.by_size:
            best = yield from self._by_size()
        else:
            best = yield from self._by_quality()
        return SearchResult(
            budget=opts.budget,
            best=best,
            front=pareto_front(self.tried),
            tried=tuple(self.tried),
            references=tuple(replace(self._cache[r.plan], label=r.label) for r in refs),
            sensitivities=tuple(self.sens),
            evaluations=self.evaluations,
            metric_name=None if self.metric is None else self.metric.name,
            float_bytes=self.fixed_bytes + self.float_weight_bytes,
            wide_layers=tuple(n for n in self.wide if best.plan[n].activation != self.narrow[n]),
            seed=opts.seed,
        )

    def _measure_weight(self, layer: Layer, fmt: Format) -> None:
        if (layer.name, fmt) in self.measured:
            return
        err, met = self._measure(Plan(self.info, {layer.name: LayerChoice(fmt)}))
        self.measured[(layer.name, fmt)] = (err * err, met)
        saved = layer.nbytes - weight_bytes_after(layer, fmt)
        self.sens.append(Sensitivity(layer.name, "weight", fmt.name, err, met, saved))

    def _predict(self, name: str, rel_w: float, fmt: Format) -> float:
        """Output noise power of one layer's weights in ``fmt``: measured, or the measured
        output/weight noise ratio of the nearest measured formats times this weight noise
        (interpolated in log space; to first order output noise grows with weight noise)."""
        hit = self.measured.get((name, fmt))
        if hit is not None:
            return hit[0]
        known = sorted(
            (math.log(w), math.log(self.measured[(name, f)][0] / w))
            for _b, w, f in self.cands[name]
            if (name, f) in self.measured and w > 0 and self.measured[(name, f)][0] > 0
        )
        if not known or rel_w <= 0:
            return 0.0
        x = math.log(rel_w)
        xs = [k[0] for k in known]
        ys = [k[1] for k in known]
        return rel_w * math.exp(float(np.interp(x, xs, ys)))

    def _rebuild(self) -> None:
        """Hulls and the greedy path from what is measured and predicted now."""
        ladders = []
        for layer in self.wlayers:
            pts: list[tuple[int, float, Format | None]] = [(layer.nbytes, 0.0, None)]
            for nbytes, rel_w, fmt in self.cands[layer.name]:
                pts.append((nbytes, self._predict(layer.name, rel_w, fmt), fmt))
            ladders.append(_Ladder(layer, _hull(pts)))
        self.ladders = {lad.layer.name: lad for lad in ladders}
        self.moves = _greedy(ladders)

    def _measure_around(self, k: int) -> Generator[Progress, None, None]:
        """Measure the predicted formats each layer takes near step ``k`` of the path."""
        weights = self._weights_at(k)
        todo = []
        for name, lad in self.ladders.items():
            i = next(i for i, p in enumerate(lad.points) if p[2] == weights[name])
            for j in (i - 1, i, i + 1):
                if 0 <= j < len(lad.points) and lad.points[j][2] is not None:
                    fmt = lad.points[j][2]
                    if (name, fmt) not in self.measured:
                        todo.append((name, fmt))
        self.total += len(todo)
        for name, fmt in todo:
            self._measure_weight(self.info.layer(name), fmt)
            yield self._tick(f"sensitivity: {name} weights {fmt.name}")
        self._rebuild()

    def _weight_candidates(
        self, layer: Layer, formats: Sequence[Format]
    ) -> list[tuple[int, float, Format]]:
        """Formats this layer can take that save bytes and are not beaten on both bytes and
        weight error by another (the weight error is a cheap numpy figure)."""
        ok: list[tuple[int, float, Format]] = []
        for fmt in formats:
            try:
                validate_choice(layer, LayerChoice(fmt))
                nbytes = self._lb(layer, fmt)
                if fmt not in self.w_overhead or nbytes >= layer.nbytes:
                    continue
                rel = self.engine.weight_error(layer, fmt).rel_l2
            except BitlensError:
                continue
            ok.append((nbytes, rel * rel, fmt))
        return [
            (b, m, f) for b, m, f in ok
            if not any(b2 <= b and m2 <= m and (b2, m2) != (b, m) for b2, m2, _ in ok)
        ]  # fmt: skip

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

    def _measure_wide_costs(self) -> Generator[Progress, None, None]:
        """A wide activation changes the export around it (another quantizer, and the layer
        before it may leave its integer-kernel group): what the accounting above does not
        predict of that, measured with int8 weights, one export per wide layer."""
        if not (self.wide and self.opts.check_export and self.opts.budget.by_size):
            return
        narrow = {**self.act, **self.narrow}
        saved = self.act
        self.act = narrow
        ref_plan = self.plan_of(self.ctx_weights)
        e_ref = exported_size(self.engine, ref_plan)
        acc_ref = self.point(ref_plan).file_bytes
        for name in self.wide:
            self.act = {**narrow, name: saved[name]}
            plan = self.plan_of(self.ctx_weights)
            e = exported_size(self.engine, plan)
            extra = (e - e_ref) - (self.point(plan).file_bytes - acc_ref)
            self.act_extra[(name, saved[name])] = extra
            yield self._tick(f"export cost of {name}'s wide activation")
        self.act = saved
        self._reaccount()

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

    # -- along the path ------------------------------------------------------------------------
    def _weights_at(self, k: int) -> dict[str, Format | None]:
        """Each layer's weight format after the first ``k`` greedy moves (0 = all float)."""
        idx = {name: 0 for name in self.ladders}
        for name in self.moves[:k]:
            idx[name] += 1
        return {name: self.ladders[name].points[i][2] for name, i in idx.items()}

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

    def _measure_overheads(
        self, wlayers: Sequence[Layer], wfmts: list[Format], base: Format | None
    ) -> Generator[Progress, None, list[Format]]:
        """What the export adds around a layer's weights in each format (unpacking nodes,
        scales, shape constants) and around an activation quantizer: the export of one small
        layer in that format against the float export. Formats that fail to export are
        dropped. Without the check, nothing is added."""
        self.w_overhead = {f: 0 for f in wfmts}
        self.a_overhead = 0
        self.k_overhead = {}
        if not (self.opts.check_export and self.opts.budget.by_size):
            return wfmts
        e0 = exported_size(self.engine, Plan(self.info))
        self.fixed_bytes = e0 - self.float_weight_bytes
        kept = []
        for fmt in wfmts:
            fits = [
                la for la in wlayers
                if _fits_weight(la, fmt) and weight_bytes_after(la, fmt) < la.nbytes
            ]  # fmt: skip
            if not fits:
                continue
            layer = min(fits, key=lambda la: la.nbytes)
            try:
                e = exported_size(self.engine, Plan(self.info, {layer.name: LayerChoice(fmt)}))
            except BitlensError:
                continue
            self.w_overhead[fmt] = max(0, e - e0 - weight_bytes_after(layer, fmt) + layer.nbytes)
            kept.append(fmt)
            yield self._tick(f"export cost of {fmt.name}")
        acts = [la for la in self.info.layers if la.activations and not la.graph_path]
        if base is None or not acts:
            return kept
        # every activation at the base: the quantizers' cost, on average
        all_base = {la.name: LayerChoice(None, base) for la in acts}
        e_a = exported_size(self.engine, Plan(self.info, all_base))
        self.a_overhead = max(0, round((e_a - e0) / len(acts)))
        # 8-bit weights next to 8-bit activations become an integer-kernel group, which the
        # export writes differently (QDQ for ONNX Runtime to fuse): its own cost
        # (per op type: a MatMul group and a Conv group differ)
        int8 = parse_format("int8 sym ch")
        for layer in sorted(acts, key=lambda la: la.nbytes):
            if layer.op_type in self.k_overhead or int8 not in kept:
                continue
            plan = Plan(self.info, {**all_base, layer.name: LayerChoice(int8, base)})
            if layer.name not in integer_kernel_layers(self.info, plan):
                continue
            e = exported_size(self.engine, plan)
            delta = weight_bytes_after(layer, int8) - layer.nbytes
            self.k_overhead[layer.op_type] = e - e_a - delta - self.w_overhead[int8]
        return kept

    def _noise(self, name: str, fmt: Format | None) -> float:
        if fmt is None:
            return 0.0
        rel = next((w for _b, w, f in self.cands[name] if f == fmt), None)
        return 0.0 if rel is None else self._predict(name, rel, fmt)

    def _neighbor(
        self, weights: Mapping[str, Format | None], name: str, up: bool
    ) -> Format | bool | None:
        """The next efficient format with more (up) or fewer bytes; False when none."""
        layer = self.ladders[name].layer
        cur = self._lb(layer, weights[name])
        pts = [(layer.nbytes, 0.0, None)] + [
            (b, self._noise(name, f), f) for b, _w, f in self.cands[name]
        ]
        eff = _efficient(pts)
        if up:
            above = [p for p in eff if p[0] > cur]
            return min(above, key=lambda p: p[0])[2] if above else False
        below = [p for p in eff if p[0] < cur]
        return max(below, key=lambda p: p[0])[2] if below else False

    def _probes(self) -> Generator[Progress | Point, None, dict[int, Point]]:
        n = len(self.moves)
        ks = sorted({round(i * n / max(1, self.opts.front_probes - 1))
                     for i in range(self.opts.front_probes)})  # fmt: skip
        out: dict[int, Point] = {}
        for k in ks:
            out[k] = self.point(self.plan_of(self._weights_at(k)))
            yield out[k]
            yield self._tick("front: evaluating plans along the path")
        return out

    def _first_within(self, limit: int) -> int | None:
        n = len(self.moves)
        return next((k for k in range(n + 1) if self._bytes_of(self._weights_at(k)) <= limit), None)

    def _uniform(self, fmt: Format) -> dict[str, Format | None]:
        """Every searched layer at ``fmt``, or where it cannot take it, at its nearest
        candidate no larger (else float)."""
        out: dict[str, Format | None] = {}
        for name, lad in self.ladders.items():
            if _fits_weight(lad.layer, fmt) and self._lb(lad.layer, fmt) < lad.layer.nbytes:
                out[name] = fmt
                continue
            target = self._lb(lad.layer, fmt) if _fits_weight(lad.layer, fmt) else 0
            below = [(b, f) for b, _w, f in self.cands[name] if b <= target]
            out[name] = max(below, key=lambda x: x[0])[1] if below else None
        return out

    def _by_size(self) -> Generator[Progress | Point, None, Point]:
        b = self.opts.budget
        limit = (
            b.max_bytes
            if b.max_bytes is not None
            else int(
                b.size_ratio * (self.fixed_bytes + self.float_weight_bytes)  # type: ignore[operator]
            )
        )
        k = self._first_within(limit)
        if k is None:
            smallest = self._bytes_of(self._weights_at(len(self.moves)))
            raise SearchError(
                f"no plan fits in {limit} bytes: the smallest the candidates reach is "
                f"{smallest} bytes (pins and the file's other contents included)"
            )
        yield from self._probes()
        yield from self._measure_around(k)
        k = self._first_within(limit)
        assert k is not None
        weights = self._weights_at(k)
        cur = self.point(self.plan_of(weights))
        yield cur
        # The best uniform plan that fits is a second start: the local search goes on from
        # whichever of the two is better for real.
        fitting = [u for u in self.uniform if u[0].file_bytes <= limit and u[0].error < cur.error]
        if fitting:
            cur, self.act = min(fitting, key=lambda u: u[0].error)
            weights = {name: cur.plan[name].weight for name in self.ladders}
        yield from self._refine_size(weights, cur, limit)
        if not self.opts.check_export:
            return self._best_within(limit)
        # The accounting includes the measured export overheads; check the real file, and
        # go down the ranking (then below the limit) while it does not fit.
        budget = limit
        over = 0
        for _ in range(4):
            overs = []
            for p in self._ranking(limit)[:4]:
                real = exported_size(self.engine, p.plan)
                yield self._tick("checking the exported size")
                if real <= budget:
                    return replace(p, exported_bytes=real)
                overs.append(real - p.file_bytes)
            # aim lower by the smallest shortfall of the accounting seen: the plans that
            # differ least from what was measured
            over = min(overs) if overs else 1
            limit -= max(over, 1)
            k = self._first_within(limit)
            if k is None:
                break
            # refine again at the lower limit, from the best plan under it
            fits = self._ranking(limit)
            if fits:
                p = fits[0]
                weights = {name: p.plan[name].weight for name in self.ladders}
                self.act = {name: p.plan[name].activation for name in self.act}
            else:
                weights = self._weights_at(k)
                p = self.point(self.plan_of(weights))
                yield p
            yield from self._refine_size(weights, p, limit)
        raise SearchError(
            f"no plan found whose exported file fits in {budget} bytes (the export adds "
            f"{over} bytes of graph to the last plan tried)"
        )

    def _best_within(self, limit: int) -> Point:
        return self._ranking(limit)[0]

    def _ranking(self, limit: int) -> list[Point]:
        """Plans within ``limit``, best first: the task metric (no credit above the float
        model's: that is noise), then the lowest output error."""
        fits = [p for p in self.tried if p.file_bytes <= limit]
        if self.metric is None:
            return sorted(fits, key=lambda p: (p.error, p.file_bytes))
        top = self.float_metric if self.float_metric is not None else math.inf
        return sorted(fits, key=lambda p: (-min(p.metric, top), p.error, p.file_bytes))  # type: ignore[type-var]

    def _refine_size(
        self, weights: dict[str, Format | None], cur: Point, limit: int
    ) -> Generator[Progress | Point, None, None]:
        """Swap bytes between layers, measured in the context of the current plan."""
        spent = 0
        budget = self.opts.refine_evaluations
        m = 3
        while spent + 2 * m + 1 <= budget:
            gain: dict[str, tuple[float, int, Format | None]] = {}
            cost: dict[str, tuple[float, int, Format | None]] = {}
            for up in (True, False):
                for name in self._candidates(weights, up)[:m]:
                    fmt = self._neighbor(weights, name, up)
                    assert fmt is not False
                    p = self.point(self.plan_of({**weights, name: fmt}))
                    spent += 1
                    if up:
                        gain[name] = (cur.error**2 - p.error**2, p.file_bytes - cur.file_bytes, fmt)
                    else:
                        cost[name] = (p.error**2 - cur.error**2, cur.file_bytes - p.file_bytes, fmt)
                    yield p
                    yield self._tick(f"refining: {name} one step {'up' if up else 'down'}")
            options: list[tuple[float, dict[str, Format | None]]] = []
            slack = limit - cur.file_bytes
            for u, (g, db, fu) in gain.items():
                if db <= slack and g > 0:
                    options.append((g, {**weights, u: fu}))
                for d, (c, saved, fd) in cost.items():
                    if d != u and db - saved <= slack and g - c > 0:
                        options.append((g - c, {**weights, u: fu, d: fd}))
            options.sort(key=lambda o: -o[0])
            improved = False
            for _, cand in options[:2]:
                p = self.point(self.plan_of(cand))
                spent += 1
                yield p
                yield self._tick("refining: trying a swap")
                if p.file_bytes <= limit and p.error < cur.error:
                    weights, cur, improved = cand, p, True
                    break
            if not improved:
                # a single step may itself be a better plan within the budget
                fits = [p for p in self.tried if p.file_bytes <= limit and p.error < cur.error]
                if not fits:
                    break
                cur = min(fits, key=lambda p: p.error)
                weights = {name: cur.plan[name].weight for name in self.ladders}

    def _candidates(self, weights: Mapping[str, Format | None], up: bool) -> list[str]:
        """Layers to move one step: up where the step buys back the most predicted noise
        per byte, down where it costs the least; the seed breaks near-ties."""
        scored = []
        for name, lad in self.ladders.items():
            fmt = self._neighbor(weights, name, up)
            if fmt is False:
                continue
            b0 = self._lb(lad.layer, weights[name])
            b1 = self._lb(lad.layer, fmt)  # type: ignore[arg-type]
            n0, n1 = self._noise(name, weights[name]), self._noise(name, fmt)  # type: ignore[arg-type]
            slope = abs(n1 - n0) / max(1, abs(b1 - b0))
            scored.append((-slope if up else slope, float(self.rng.random()), name))
        scored.sort()
        return [name for _, _, name in scored]

    def _by_quality(self) -> Generator[Progress | Point, None, Point]:
        b = self.opts.budget

        def ok(p: Point) -> bool:
            if b.max_error is not None:
                return p.error <= b.max_error
            return p.metric is not None and p.metric >= b.min_metric  # type: ignore[operator]

        probed = yield from self._probes()
        start = self.point(self.plan_of(self._weights_at(0)))
        if not ok(start):
            raise SearchError(
                f"even with float weights the plan misses the budget ({b.describe()}): error "
                f"{start.error:.4g}"
                + ("" if start.metric is None else f", metric {start.metric:.4g}")
                + "; allow more wide activations or keep activations float"
            )
        passed = max(k for k, p in [(0, start), *probed.items()] if ok(p))
        yield from self._measure_around(passed)
        # bisect the rebuilt path for the largest k that passes (the error grows roughly
        # along the path)
        lo, hi = 0, len(self.moves)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            p = self.point(self.plan_of(self._weights_at(mid)))
            yield p
            yield self._tick("bisecting the path for the budget")
            if ok(p):
                lo = mid
            else:
                hi = mid - 1
        weights = self._weights_at(lo)
        cur = self.point(self.plan_of(weights))
        spent = 0
        # then shave more bytes one step at a time where the real error allows it
        while spent < self.opts.refine_evaluations:
            moved = False
            for name in self._candidates(weights, up=False)[:4]:
                fmt = self._neighbor(weights, name, up=False)
                cand = {**weights, name: fmt}
                p = self.point(self.plan_of(cand))  # type: ignore[arg-type]
                spent += 1
                yield p
                yield self._tick(f"refining: {name} one step down")
                if ok(p) and p.file_bytes < cur.file_bytes:
                    weights, cur, moved = cand, p, True  # type: ignore[assignment]
                    break
                if spent >= self.opts.refine_evaluations:
                    break
            if not moved:
                break
        passing = [p for p in self.tried if ok(p)]
        return min(passing, key=lambda p: (p.file_bytes, p.error))


# -- helpers ---------------------------------------------------------------------------------


def _parse_all(names: Iterable[str], what: str) -> list[Any]:
    out: list[Any] = []
    for name in names:
        if what == "activation" and name == FLOAT_NAME:
            out.append(None)
            continue
        try:
            out.append(parse_format(name))
        except BitlensError as exc:
            raise SearchError(f"{what} format {name!r}: {exc}") from None
    if not out:
        raise SearchError(f"no {what} formats to try")
    return out


def _anchors(cands: Sequence[tuple[int, float, Format]]) -> list[Format]:
    """Two formats measured for every layer: the smallest nearest 8 and 4 bits per weight
    (per-channel int8 and int4 with the default candidates)."""
    if len(cands) <= 2:
        return [f for _, _, f in cands]
    picks: list[Format] = []
    for bits in (8, 4):
        best = min(cands, key=lambda c: (abs(c[2].bits - bits), c[0]))[2]
        if best not in picks:
            picks.append(best)
    return picks


def _wider(fmt: Format, base: Format) -> bool:
    """Wider than the base: more bits, or as many but per channel (no integer kernel)."""
    if fmt.bits > base.bits:
        return True
    return fmt.bits == base.bits and fmt.granularity is Granularity.CHANNEL


def _fits(layer: Layer, fmt: Format) -> bool:
    try:
        validate_choice(layer, LayerChoice(None, fmt))
    except PlanError:
        return False
    return True


def _fits_weight(layer: Layer, fmt: Format) -> bool:
    try:
        validate_choice(layer, LayerChoice(fmt))
    except PlanError:
        return False
    return True


def _efficient(
    points: list[tuple[int, float, Format | None]],
) -> list[tuple[int, float, Format | None]]:
    """The points no other beats on both bytes and noise, most bytes first."""
    eff: list[tuple[int, float, Format | None]] = []
    for p in sorted(points, key=lambda p: (p[0], p[1])):  # bytes up: noise must go down
        if not eff or (p[0] > eff[-1][0] and p[1] < eff[-1][1]):
            eff.append(p)
    return eff[::-1]


def _hull(points: list[tuple[int, float, Format | None]]) -> list[tuple[int, float, Format | None]]:
    """The efficient lower convex hull of (bytes, noise), most bytes first.

    Keeping only convex points makes every next step cost more noise per byte than the
    one before, which is what lets one heap order the steps of all layers.
    """
    eff = _efficient(points)
    hull: list[tuple[int, float, Format | None]] = []
    for p in eff:
        while len(hull) >= 2:
            (b0, n0, _), (b1, n1, _) = hull[-2], hull[-1]
            # drop hull[-1] if it lies above the segment hull[-2] -> p
            if (n1 - n0) * (b0 - p[0]) >= (p[1] - n0) * (b0 - b1):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def _greedy(ladders: Sequence[_Ladder]) -> list[str]:
    """Layer names in the order their next hull step is taken: least noise per byte first."""
    heap: list[tuple[float, int, str, int]] = []
    order = {lad.layer.name: i for i, lad in enumerate(ladders)}
    by_name = {lad.layer.name: lad for lad in ladders}

    def push(name: str, i: int) -> None:
        pts = by_name[name].points
        if i + 1 < len(pts):
            (b0, n0, _), (b1, n1, _) = pts[i], pts[i + 1]
            heapq.heappush(heap, ((n1 - n0) / max(1, b0 - b1), order[name], name, i))

    for lad in ladders:
        push(lad.layer.name, 0)
    moves: list[str] = []
    while heap:
        _, _, name, i = heapq.heappop(heap)
        moves.append(name)
        push(name, i + 1)
    return moves
