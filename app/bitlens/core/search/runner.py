"""The search from start to end: references, activations, sensitivities, uniform starts, then
the refinement for the budget's kind."""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import replace

from bitlens.core.blas_threads import each_step
from bitlens.core.engine import Engine
from bitlens.core.errors import SearchError
from bitlens.core.formats import Family, Format, parse_format
from bitlens.core.frozen_heap import frozen_during
from bitlens.core.model.half_activations import quantizable_activations
from bitlens.core.model.types import Layer, ModelInfo
from bitlens.core.plan import Plan, stored_grid
from bitlens.core.results import Progress
from bitlens.core.search.activations import choose_activations
from bitlens.core.search.candidates import _anchors, _fits_weight, _parse_all
from bitlens.core.search.filesize import FileSizes
from bitlens.core.search.guard import batchable, rows_of, split_notes, split_rows
from bitlens.core.search.latency import (
    MARGINAL,
    NotSteered,
    Speed,
    freeing_order,
    marginal,
    speed_limit,
    unlocked,
)
from bitlens.core.search.memory import MemoryBound, bounded, search_memory
from bitlens.core.search.options import FLOAT_NAME, RELATIVE_LATENCIES, SearchOptions
from bitlens.core.search.overheads import measure_overheads, measure_wide_costs
from bitlens.core.search.passes import Shared
from bitlens.core.search.points import Measuring, Point, SearchResult, Steering, pareto_front
from bitlens.core.search.refine import Refinement
from bitlens.core.search.speed import W8A8, with_speed
from bitlens.core.search.unexercised import kept_note, never_ran
from bitlens.core.shared_weights import one_per_group, weight_groups
from bitlens.core.targets import ORT_CPU
from bitlens.core.usermetric import default_metric


def search(
    engine: Engine, options: SearchOptions
) -> Generator[Progress | Point, None, SearchResult]:
    """Run the search; yields Progress, every whole plan evaluated (for live plots) and,
    before them, where their errors are measured (:class:`Measuring`).

    Cancel by not resuming the generator (or ``close()``); the engine stays usable.
    Its steps run numpy's OpenBLAS on one thread (core/blas_threads.py: on the 50-layer
    benchmark under load, 36 -> 28 s CPU with the same plan). Where the plan was exported,
    the result also gives its deployed speed (core/search/speed.py). Between steps the
    process keeps at most ``options.memory_limit`` resident where it can (core/search/memory.py).
    The objects alive at its start are kept out of the garbage collector until it ends
    (core/frozen_heap.py).
    """
    bound = MemoryBound(engine, search_memory(engine, options.memory_limit))
    # the objects alive at its start out of the garbage collector's walks while it runs: each
    # full collection held the interpreter lock 55-75 ms, stalling the window (frozen_heap.py)
    return frozen_during(each_step(bounded(_timed(engine, options), bound), 1))


def _timed(
    engine: Engine, options: SearchOptions
) -> Generator[Progress | Point, None, SearchResult]:
    sizes: list[FileSizes] = []  # the first search's accounting, its W8A8 export kept
    result = yield from _search(engine, options, sizes)
    if not options.speed_check:
        return result
    return (yield from with_speed(engine, result, options.target, sizes[0] if sizes else None))


def _search(
    engine: Engine, options: SearchOptions, sizes: list[FileSizes]
) -> Generator[Progress | Point, None, SearchResult]:
    kept = engine.max_sessions
    engine.max_sessions = min(kept, 2)  # many structures, one after the other: keep few
    engine.keep_rows_apart()  # before rows are held back: rows that mix stay together
    data = engine.data
    split = None
    if data is not None and options.budget.by_size and options.check_export:
        # evaluation rows held back from the search (guard.py): their feeds are added to the
        # engine's data for the search's duration, its own feeds unchanged
        engine.data, split = split_rows(
            data, batchable(engine.info), options.check_fraction, options.seed
        )
    shared = Shared()  # what every pass measures alike (passes.py)
    try:
        first = _Search(engine, options, split, shared)
        sizes.append(first.size)
        try:
            result = yield from first.run()
        except SearchError as exc:
            if first.speed is None or not first.speed.locked:
                raise
            # the accounting let the locked layers in, the real exports did not fit: the
            # budget comes first (core/search/latency.py)
            w8a8 = first.speed.w8a8
            locked, first = first, _Search(engine, replace(options, max_latency=None), split, shared)
            first.recov = locked.recov  # the recovery choices do not depend on speed
            first.steering = Steering(
                "speed: not steered: the speed limit left no plan within the budget "
                f"({exc}): searched without it",
                w8a8,
                None,
            )
            result = yield from first.run()
        # W8A8's predicted saving marginal (rapidocr-det: x0.88 predicted, 0.93-1.05 measured;
        # its error is almost all the 8-bit activations', and the limit's locked layers keep
        # them): weights-only plans, at the float model's speed, lose little speed there
        also = first.marginal and options.max_latency in RELATIVE_LATENCIES
        also = also and _may_fall_back(options)
        if not also and not _needs_float_activations(result, options):
            return result
        if (
            first.speed is not None
            and first.speed.locked
            and options.max_latency not in RELATIVE_LATENCIES
        ):
            # weights-only plans run every layer in float: slower than the limit asked for
            return replace(result, notes=(*result.notes, (
                "plans with float activations were not searched: they run in float, slower "
                f"than the speed limit (x{first.speed.limit:.2f} of the float time predicted; "
                "--max-latency none allows them)"
            )))  # fmt: skip
        # A limit set from W8A8's time (the default) gives way where nothing that fast beats W8A8:
        # the weights-only plan runs at the float model's speed, and says so (fsmn-vad, the
        # text sample: their wins over W8A8 are weights-only plans)
        # Small budgets: the activation quantizers (and the tensors the target quantizes
        # with them) take kilobytes the weights then lack; on the text sample at half the
        # W8A8 size, weights-only plans kept 90% accuracy where 8-bit activations kept 62%.
        second = _Search(engine, replace(options, base_activation=None), split, shared)
        second.recov = first.recov  # the recovery choices do not depend on activations
        second.speed_known = True  # not steered (else it would not run)
        try:
            other = yield from _prefixed(second.run(), "float activations: ")
        except SearchError:
            return result
        merged = _merge(result, other)
        # the calibration rows' say in either pass (calib_check.py), whichever plan won
        vetoes = tuple(n for n in shared.calib_notes if n not in merged.notes)
        merged = replace(merged, notes=(*merged.notes, *vetoes))
        if also and merged.steering is not None:
            won = merged.best is other.best
            merged = replace(merged, steering=_marginal_steering(merged.steering, won, result))
        preset = result.best.label
        if merged.best is other.best and preset not in ("search", FLOAT_NAME):
            was, now = result.best.check_error, other.best.check_error
            merged = replace(merged, notes=(*merged.notes, (
                f"with 8-bit activations no plan beat the {preset} preset on the held-back "
                f"feeds{'' if was is None else f' (error {was:.4g} there)'}"
                + (" and the calibration rows" if shared.calib_notes else "")
                + "; the plan returned "
                "keeps its activations float (weights only: they run in float when deployed)"
                + ("" if now is None else f" and has error {now:.4g} there")
                + ("" if first.speed is None else
                   f", slower than the speed limit (--max-latency {first.speed.limit:.2f} "
                   "keeps that limit instead)")
            )))  # fmt: skip
        return merged
    finally:
        engine.max_sessions = kept
        if engine.data is not data:
            engine.forget_kept_values()  # kept for the split's feeds, gone with them
        engine.data = data


def grid_formats(
    info: ModelInfo, layers: Sequence[Layer], formats: Sequence[Format], target: str
) -> dict[Format, frozenset[str]]:
    """The int8 formats on the file's own grid (bitlens.core.model.stored_grid) that take
    the place of the candidates' signed 8-bit integer formats, each with the layers whose
    weights the file stores as int8 codes on it, as the 8-bit presets keep them
    (plan.stored_grid). tinyocr's PP-OCRv6 recognizer stores its weights as codes -127..127:
    the search's ``int8 sym ch`` re-rounded them, and its weights-only plan had 0.037
    relative output error where the file's own grid, same bytes, has 1.6e-6."""
    out: dict[Format, set[str]] = {}
    int8 = [f for f in formats if f.family is Family.INT and f.bits == 8 and f.signed]
    for layer in layers if info.stored_grids else ():
        for fmt in int8:
            grid = stored_grid(info, layer.name, fmt, target)
            if grid is not None and grid not in formats:  # a candidate already: every layer's
                out.setdefault(grid, set()).add(layer.name)
    return {f: frozenset(names) for f, names in out.items()}


def _may_fall_back(options: SearchOptions) -> bool:
    """A size budget, 8-bit activations, the fallback allowed: a weights-only search may run."""
    return (
        options.budget.by_size
        and options.base_activation not in (None, FLOAT_NAME)
        and options.float_activation_fallback is not None
    )


def _marginal_steering(steer: Steering, won: bool, first: SearchResult) -> Steering:
    """``steer``'s line, saying that the weights-only search ran because W8A8's predicted
    saving is marginal, and which plan was kept (``won``: the weights-only one) where
    (``first``: the search with 8-bit activations; _merge compares on held-back feeds where
    both were checked there)."""
    where = "the held-back feeds" if first.check_rows else "the evaluation feeds"
    kept = (
        "its plan (float activations: it runs at the float model's speed) did better on "
        f"{where} and is returned"
        if won
        else f"the plan with 8-bit activations did better on {where} and is returned"
    )
    return replace(steer, weights_only=won, text=(
        f"{steer.text}; W8A8's predicted saving is marginal (x{steer.w8a8:.2f} of the float "
        f"time, at or above x{MARGINAL:.2f}), so the weights-only search ran too: {kept}"
    ))  # fmt: skip


def _needs_float_activations(result: SearchResult, options: SearchOptions) -> bool:
    """A size budget whose plan loses more of the task metric than the option allows, or
    is the same-size preset itself: with 8-bit activations the search found nothing that
    beat it on the feeds it did not fit. (The text sample at W8A8's size: W8A8's error
    there is mostly its activations' and spread over all 13 layers, so the one wide
    activation allowed gained 3%, within what 50 held-back rows can tell; on 1500 new rows
    W8A8 had 0.0089 and the search's plans 0.0090. Weights-only plans of that size have
    0.0059.)"""
    if not _may_fall_back(options):
        return False
    if result.best.label not in ("search", FLOAT_NAME):
        return True
    flt = next(p for p in result.references if p.label == FLOAT_NAME)
    return (
        result.best.metric is not None
        and flt.metric is not None
        and result.best.metric < flt.metric - options.float_activation_fallback
    )


def _prefixed(
    gen: Generator[Progress | Point, None, SearchResult], prefix: str
) -> Generator[Progress | Point, None, SearchResult]:
    try:
        item = next(gen)
        while True:
            if isinstance(item, Progress):
                item = Progress(item.done, item.total, prefix + item.message)
            yield item
            item = next(gen)
    except StopIteration as stop:
        return stop.value


def _merge(a: SearchResult, b: SearchResult) -> SearchResult:
    """Two searches of one budget as one: the better best plan (task metric up to the float
    model's, then output error, then bytes), every plan tried, their joint front."""
    flt = next(p for p in a.references if p.label == FLOAT_NAME).metric
    top = flt if flt is not None else math.inf

    # both measured on the held-back feeds, or as deployed: those errors decide
    # (core/search/guard.py, deployed.py)
    checked = a.best.check_error is not None and b.best.check_error is not None
    deployed = a.best.deployed_error is not None and b.best.deployed_error is not None

    def rank(p: Point) -> tuple[float, float, int]:
        metric = -math.inf if p.metric is None else p.metric
        if checked:
            metric = -math.inf if p.check_metric is None else p.check_metric
        error = p.check_error if checked else p.deployed_error if deployed else p.error
        return (-min(metric, top), error, p.file_bytes)  # type: ignore[return-value]

    win = a if rank(a.best) <= rank(b.best) else b
    tried = a.tried + b.tried
    return replace(
        win,
        front=pareto_front(tried, [r for r in a.references if r.label == FLOAT_NAME]),
        tried=tried,
        references=a.references,
        sensitivities=a.sensitivities + b.sensitivities,
        evaluations=a.evaluations + b.evaluations,
        notes=win.notes,  # the other's notes say why it returned a plan that is not returned
        steering=a.steering,  # the first search decides it; the second is never steered
    )


class _Search(Refinement):
    speed_known = False  # the latency limit decided (by this search or the first)
    steering: Steering | None = None  # what it decided, for the result
    marginal = False  # the limit was set from W8A8's time, its predicted saving marginal

    def _steer_speed(self, base: Format | None, act_layers: list[Layer]) -> None:
        """The latency limit (core/search/latency.py) where the target is ONNX Runtime CPU:
        the layers whose integer kernel it needs keep only the candidates that keep it, as
        many as the size budget leaves room for."""
        opts = self.opts
        if self.speed_known or opts.max_latency is None or opts.target != ORT_CPU:
            return
        if base is None or base.signed:
            return  # no plan has a (fast: latency.plan_kernels) integer kernel
        able = {
            la.name: any(_fits_weight(la, f) and self._keeps_kernel(la, f) for f in self.wfmts)
            for la in self.wlayers
        }
        speed = speed_limit(self.engine, self._w8a8, opts.max_latency, able)
        self.marginal = marginal(speed)
        if isinstance(speed, NotSteered):
            self.steering = speed.steering()
            return
        # each such layer's candidates among the formats that keep its kernel (a kernel
        # format another beats on bytes and error is still one the layer may need)
        self.speed = replace(speed, locked=speed.kernels)
        kept = {n: self._weight_candidates(self.info.layer(n), self.wfmts) for n in speed.kernels}
        if opts.budget.by_size:
            # the smallest plan the locked layers allow must fit: else free them, most
            # bytes per MAC first (with every activation at the base, as the path starts)
            limit = self._byte_limit()
            saved, self.act = self.act, {la.name: base for la in act_layers}
            for name in [None, *freeing_order(self.engine, speed)]:
                speed = speed if name is None else unlocked(speed, [name])
                if self._bytes_of(self._smallest(speed, kept)) <= limit:
                    break
            self.act = saved
        self.speed = speed
        self.cands.update({n: kept[n] for n in speed.locked})
        self.steering = speed.steering()

    def _keep_unrun(self) -> None:
        """Layers the feeds never ran keep W8A8's choice (core/search/unexercised.py)."""
        locked = self.speed.locked if self.speed is not None else ()
        names = [n for n in never_ran(self.wlayers, self.cands, self.measured) if n not in locked]
        if not names:
            return
        for name in names:
            self.pins[name] = self._w8a8[name]
            del self.cands[name]
            self.ctx_weights.pop(name, None)
        self.wlayers = [la for la in self.wlayers if la.name not in self.pins]
        self.unrun = tuple(names)
        self.notes.append(kept_note(names, self._w8a8))

    def _smallest(
        self, speed: Speed, kept: dict[str, list[tuple[int, float, Format]]]
    ) -> dict[str, Format | None]:
        """Each searched layer's smallest candidate, a locked one's among ``kept`` (those
        keeping its integer kernel; None: float)."""
        out: dict[str, Format | None] = {}
        for name, cands in self.cands.items():
            ok = kept[name] if name in speed.locked else cands
            out[name] = min(ok, key=lambda c: c[0])[2] if ok else None
        return out

    def run(self) -> Generator[Progress | Point | Measuring, None, SearchResult]:
        engine, opts = self.engine, self.opts
        if engine.data is None:
            raise SearchError("the search runs the model: give it input data (or input sizes)")
        yield Measuring(
            rows_of(engine.data, self.split.fit + self.split.check),
            len(self.split.check_rows),
            tuple(sorted(engine.label_outputs)),
        )
        yield from engine.prepare()
        self._w8a8 = Plan.preset(self.info, W8A8).with_target(opts.target)
        if opts.speed_check and opts.target == ORT_CPU:
            self.size.keep = self._w8a8  # its export, built for the sizes, is timed at the end
        self.set_parts()  # ref and labels: the fitted evaluation feeds'
        if opts.budget.by_size and opts.check_export and opts.check_fraction > 0:
            self.notes += split_notes(engine.data, self.split)
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
        self.base_act = base
        act_layers = [
            layer for layer in free
            if base is not None and quantizable_activations(self.info, layer)
        ]  # fmt: skip
        # a weight read by several layers is one decision, taken by its first reader (the
        # plan gives the others its format); a group with a pinned reader follows the pin
        deciders = set(one_per_group(self.info, [la.name for la in free if la.weights]))
        pinned = {n for p in self.pins for n in weight_groups(self.info).get(p, ())}
        wlayers = [la for la in free if la.name in deciders and la.name not in pinned]
        self.grid_layers = grid_formats(self.info, wlayers, wfmts, opts.target)
        wfmts += [f for f in self.grid_layers if f not in wfmts]
        # per weight layer: its candidates (and recovery), then its anchors measured
        self.total = 2 * len(wlayers) + 3 * len(act_layers) + len(wfmts) + opts.front_probes
        self.total += 6 if opts.budget.by_size and opts.check_export else 0
        self.total += opts.refine_evaluations + len(opts.references) + 2

        # 1. which formats each layer can take (numpy only: quantization and weight error),
        # and what the export adds around each
        wfmts = yield from measure_overheads(self, wlayers, wfmts, base)
        # references: float and presets, for the plot and the comparison
        refs = [self.point(self.plan_for({}), FLOAT_NAME)]
        self.float_metric = refs[0].metric
        yield refs[0]
        for name in opts.references:
            refs.append(
                self.point(Plan.preset(self.info, name).with_target(self.opts.target), name)
            )
            yield refs[-1]
            yield self._tick(f"reference {name}")
        self.references = refs

        self.wfmts = wfmts
        self.wlayers = wlayers
        # (recovery is a GPTQ pass per layer and low-bit format: seconds per layer on a big
        # convnet, so each layer is a step that shows progress and can be cancelled after)
        self.cands: dict[str, list[tuple[int, float, Format]]] = {}
        for layer in wlayers:
            self.cands[layer.name] = self._weight_candidates(layer, wfmts)
            yield self._tick(f"candidates: {layer.name} weights")
        self._steer_speed(base, act_layers)
        self.measured: dict[tuple[str, Format], tuple[float, float | None]] = {}
        # 2. activations: base everywhere, free 8-bit swaps, a few wide exceptions; measured
        # with 8-bit weights, the context a budget near W8A8 needs them in
        int8 = parse_format("int8 sym ch")
        self.ctx_weights: dict[str, Format | None] = {
            name: fmt if any(f == fmt for _b, _w, f in c) else None
            for name, c in self.cands.items()
            for fmt in [self.on_grid(name, int8)]
        }
        if base is not None:
            yield from choose_activations(self, base, afmts, act_layers)
            yield from measure_wide_costs(self)
        # 3. weights: each layer alone at two anchor formats; the rest predicted from the
        # weight error until the path shows which formats matter, then measured there
        for layer in wlayers:
            for fmt in _anchors(self.cands[layer.name]):
                self._measure_weight(layer, fmt)
            yield self._tick(f"sensitivity: {layer.name} weights")
        self._keep_unrun()
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
            front=pareto_front(self.tried, refs[:1]),  # the float model: refs[0]
            tried=tuple(self.tried),
            references=tuple(replace(self._cache[r.plan], label=r.label) for r in refs),
            sensitivities=tuple(self.sens),
            evaluations=self.evaluations,
            metric_name=None if self.metric is None else self.metric.name,
            float_bytes=self.size.fixed_bytes + self.size.float_weight_bytes,
            wide_layers=tuple(n for n in self.wide if best.plan[n].activation != self.narrow[n]),
            seed=opts.seed,
            eval_rows=rows_of(engine.data, self.split.fit + self.split.check),
            check_rows=self.split.check_rows,
            notes=tuple(self.notes),
            steering=self.steering,
            label_outputs=tuple(sorted(engine.label_outputs)),
        )
