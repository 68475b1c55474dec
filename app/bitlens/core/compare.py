"""Two plans, or two models, side by side: per-layer deltas computed once, read by every view.

Plan A/B (:func:`compare_evaluations`): the same model under two plans. For
each layer the SQNR of each error kind under A and under B and their
difference (B minus A, in dB: positive means B is better), the weight bytes
under each and their difference (negative means B is smaller, better), and
the same for every model output and task metric. The window's table, plots
and status bar and ``bitlens eval --compare-plan`` read these values.

Two models (:func:`compare_models`): a model and, e.g., its fine-tuned
version or another export of it. Layers are matched by name; those only in
one model are listed. For each matched layer, the weights of B against A's
as the reference (relative L2 difference, SQNR, max |difference|), and, when
a plan is given, the weight SQNR each model gets in the plan's format for
that layer: does the format fit both?
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitlens.core.formats import fake_quantize
from bitlens.core.jsonsafe import jsonable
from bitlens.core.metrics import sqnr_db, tensor_error_f64
from bitlens.core.model.loader import LoadedModel
from bitlens.core.model.types import Layer
from bitlens.core.plan import Plan
from bitlens.core.results import Evaluation, LayerResult, OutputResult, Progress, TensorError
from bitlens.core.weights import bind

ERROR_KINDS = ("weight", "local", "accumulated")
SAME_DB = 0.05  # SQNR changes smaller than this are "the same" (printing rounds to 0.1 dB)


def delta_db(a: float | None, b: float | None) -> float | None:
    """B's SQNR minus A's (positive: B is better); None when either is missing.

    Exact results (+inf) compare as equal to each other and better than any finite SQNR.
    """
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    if math.isinf(a) and math.isinf(b) and (a > 0) == (b > 0):
        return 0.0
    return b - a


def verdict(delta: float | None, *, higher_is_better: bool = True, tol: float = SAME_DB) -> str:
    """``"better"``, ``"worse"`` or ``"same"`` for B against A; ``""`` when unknown."""
    if delta is None or math.isnan(delta):
        return ""
    if abs(delta) <= tol:
        return "same"
    return "better" if (delta > 0) == higher_is_better else "worse"


def _error(r: LayerResult | None, kind: str) -> TensorError | None:
    if r is None:
        return None
    return {"weight": r.weight, "local": r.local, "accumulated": r.accumulated}[kind]


@dataclass(frozen=True)
class LayerDelta:
    """One layer under plan A and plan B."""

    name: str
    choice_a: str  # "weights / activations" as the plan says, for reading
    choice_b: str
    a: LayerResult | None
    b: LayerResult | None

    @property
    def changed(self) -> bool:
        return self.choice_a != self.choice_b

    def sqnr(self, kind: str) -> tuple[float | None, float | None]:
        ea, eb = _error(self.a, kind), _error(self.b, kind)
        return (None if ea is None else ea.sqnr_db, None if eb is None else eb.sqnr_db)

    def delta_db(self, kind: str) -> float | None:
        """B minus A in dB for this error kind; a layer float in one plan and quantized in
        the other counts the float side as exact."""
        a, b = self.sqnr(kind)
        if kind != "accumulated":  # no error at all means kept float: exact
            a = math.inf if a is None and self.a is not None else a
            b = math.inf if b is None and self.b is not None else b
        return delta_db(a, b)

    @property
    def bytes_a(self) -> int | None:
        return None if self.a is None else self.a.bytes_after

    @property
    def bytes_b(self) -> int | None:
        return None if self.b is None else self.b.bytes_after

    @property
    def delta_bytes(self) -> int | None:
        """B's weight bytes minus A's (negative: B is smaller)."""
        if self.bytes_a is None or self.bytes_b is None:
            return None
        return self.bytes_b - self.bytes_a


@dataclass(frozen=True)
class OutputDelta:
    name: str
    a: OutputResult | None
    b: OutputResult | None

    @property
    def sqnr_a(self) -> float | None:
        return None if self.a is None else self.a.error.sqnr_db

    @property
    def sqnr_b(self) -> float | None:
        return None if self.b is None else self.b.error.sqnr_db

    @property
    def delta_db(self) -> float | None:
        return delta_db(self.sqnr_a, self.sqnr_b)


@dataclass(frozen=True)
class PlanComparison:
    """The current plan (B) against a pinned one (A), on the same model and data."""

    layers: tuple[LayerDelta, ...]
    outputs: tuple[OutputDelta, ...]
    bytes_before: int
    bytes_a: int
    bytes_b: int
    metrics: Mapping[str, tuple[float | None, float | None]]  # name -> (A, B), higher better

    def layer(self, name: str) -> LayerDelta | None:
        for d in self.layers:
            if d.name == name:
                return d
        return None

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.layers if d.changed)

    @property
    def delta_bytes(self) -> int:
        return self.bytes_b - self.bytes_a

    def to_dict(self) -> dict:
        layers = []
        for d in self.layers:
            row: dict = {
                "name": d.name, "a": d.choice_a, "b": d.choice_b, "changed": d.changed,
                "bytes_a": d.bytes_a, "bytes_b": d.bytes_b, "delta_bytes": d.delta_bytes,
            }  # fmt: skip
            for kind in ERROR_KINDS:
                sa, sb = d.sqnr(kind)
                row[f"{kind}_sqnr_a"], row[f"{kind}_sqnr_b"] = sa, sb
                row[f"{kind}_delta_db"] = d.delta_db(kind)
            layers.append(row)
        return jsonable({
            "layers": layers,
            "outputs": [
                {"name": o.name, "sqnr_a": o.sqnr_a, "sqnr_b": o.sqnr_b, "delta_db": o.delta_db}
                for o in self.outputs
            ],
            "bytes_before": self.bytes_before,
            "bytes_a": self.bytes_a,
            "bytes_b": self.bytes_b,
            "delta_bytes": self.delta_bytes,
            "metrics": {k: {"a": a, "b": b} for k, (a, b) in self.metrics.items()},
            "changed": list(self.changed),
        })  # fmt: skip


def describe_choice(plan: Plan, name: str) -> str:
    c = plan[name]
    w = "float" if c.weight is None else c.weight.name
    a = "float" if c.activation is None else c.activation.name + (" dyn" if c.dynamic else "")
    return f"{w} / {a}"


def compare_evaluations(
    plan_a: Plan, ev_a: Evaluation, plan_b: Plan, ev_b: Evaluation
) -> PlanComparison:
    """Per-layer and per-output deltas of plan B against plan A (same model)."""
    if plan_a.info is not plan_b.info and plan_a.info.layer_names != plan_b.info.layer_names:
        raise ValueError("plan A and plan B are for different models")
    names = plan_b.info.layer_names
    layers = tuple(
        LayerDelta(n, describe_choice(plan_a, n), describe_choice(plan_b, n),
                   ev_a.layers.get(n), ev_b.layers.get(n))
        for n in names
    )  # fmt: skip
    outs = list(ev_b.outputs) + [o for o in ev_a.outputs if o not in ev_b.outputs]
    outputs = tuple(OutputDelta(o, ev_a.outputs.get(o), ev_b.outputs.get(o)) for o in outs)
    metrics: dict[str, tuple[float | None, float | None]] = {}
    for o in outputs:  # top-1 agreement with the float model, where the output is a classifier's
        ta = None if o.a is None else o.a.top1_agreement
        tb = None if o.b is None else o.b.top1_agreement
        if ta is not None or tb is not None:
            metrics[f"top-1 agreement ({o.name})"] = (ta, tb)
    for k in list(ev_b.task_metric) + [k for k in ev_a.task_metric if k not in ev_b.task_metric]:
        if k != "accuracy_float":  # the same under both plans
            metrics[k] = (ev_a.task_metric.get(k), ev_b.task_metric.get(k))
    return PlanComparison(
        layers, outputs, ev_b.bytes_before, ev_a.bytes_after, ev_b.bytes_after, metrics
    )


# -- two models ---------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightDiff:
    """One layer present in both models, by name."""

    name: str
    op_a: str
    op_b: str
    shapes_a: tuple[tuple[int, ...], ...]
    shapes_b: tuple[tuple[int, ...], ...]
    params: int
    diff: TensorError | None  # B's weights against A's (None: the shapes differ)
    format: str | None = None  # the plan's weight format for the layer, when a plan was given
    sqnr_a: float | None = None  # A's weights in that format
    sqnr_b: float | None = None  # B's weights in that format

    @property
    def same_shape(self) -> bool:
        return self.shapes_a == self.shapes_b

    @property
    def identical(self) -> bool:
        return self.diff is not None and self.diff.max_abs == 0.0


@dataclass(frozen=True)
class ModelComparison:
    path_a: str
    path_b: str
    layers: tuple[WeightDiff, ...]  # in A's topological order
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]
    notes_b: tuple[str, ...] = ()  # what the loader said of the other model (already quantized)

    def to_dict(self) -> dict:
        rows = []
        for d in self.layers:
            rows.append({
                "name": d.name, "op_a": d.op_a, "op_b": d.op_b,
                "shapes_a": [list(s) for s in d.shapes_a],
                "shapes_b": [list(s) for s in d.shapes_b], "params": d.params,
                "same_shape": d.same_shape, "identical": d.identical,
                "difference": None if d.diff is None else {
                    "rel_l2": d.diff.rel_l2, "sqnr_db": d.diff.sqnr_db,
                    "max_abs": d.diff.max_abs, "cosine": d.diff.cosine,
                },
                "format": d.format, "weight_sqnr_a": d.sqnr_a, "weight_sqnr_b": d.sqnr_b,
            })  # fmt: skip
        return jsonable({
            "a": self.path_a, "b": self.path_b, "layers": rows,
            "only_in_a": list(self.only_a), "only_in_b": list(self.only_b),
            "notes_b": list(self.notes_b),
        })  # fmt: skip


def _flat(model: LoadedModel, layer: Layer) -> np.ndarray:
    arrays = [np.asarray(model.weight(w), np.float64).ravel() for w in layer.weights]
    return np.concatenate(arrays) if arrays else np.empty(0)


def _plan_sqnr(model: LoadedModel, layer: Layer, plan: Plan | None) -> tuple[str | None, float | None]:
    """The layer's weight SQNR in the plan's format (chosen by layer name) in this model."""
    if plan is None or layer.name not in plan.info.layer_names or not layer.weights:
        return None, None
    fmt = plan[layer.name].weight
    if fmt is None:
        return None, None
    refs, approx = [], []
    for w in layer.weights:
        ref = model.weight(w)
        refs.append(np.asarray(ref, np.float64).ravel())
        q = fake_quantize(ref, bind(fmt, w), what=f"weight {w.name!r}")
        approx.append(np.asarray(q, np.float64).ravel())
    return fmt.name, sqnr_db(np.concatenate(refs), np.concatenate(approx))


def compare_models(a: LoadedModel, b: LoadedModel, plan: Plan | None = None) -> ModelComparison:
    """Match ``b``'s layers to ``a``'s by name and compare their weights.

    ``plan`` (for model A) adds, per matched layer, the weight SQNR of each
    model's weights in the plan's format for that layer.
    """
    layers_b = {layer.name: layer for layer in b.info.layers}
    names_a = set(a.info.layer_names)
    rows = []
    for la in a.info.layers:
        lb = layers_b.get(la.name)
        if lb is None:
            continue
        shapes_a = tuple(tuple(w.shape) for w in la.weights)
        shapes_b = tuple(tuple(w.shape) for w in lb.weights)
        diff = None
        if shapes_a == shapes_b and la.weights:
            diff = tensor_error_f64(_flat(a, la), _flat(b, lb))
        fmt, sa = _plan_sqnr(a, la, plan)
        sb = None
        if fmt is not None and shapes_a == shapes_b:
            _, sb = _plan_sqnr(b, lb, plan)
        rows.append(WeightDiff(la.name, la.op_type, lb.op_type, shapes_a, shapes_b, la.params,
                               diff, fmt, sa, sb))  # fmt: skip
    return ModelComparison(
        path_a=str(a.path) if a.path is not None else "model A",
        path_b=str(b.path) if b.path is not None else "model B",
        layers=tuple(rows),
        only_a=tuple(n for n in a.info.layer_names if n not in layers_b),
        only_b=tuple(n for n in b.info.layer_names if n not in names_a),
        notes_b=tuple(b.info.notes),
    )


# -- text, as the CLI prints it ---------------------------------------------------------------
def db_text(
    x: float | None, *, signed: bool = False, missing: str = "-", exact: str = "inf",
    minus: str = "-",
) -> str:  # fmt: skip
    """A dB figure to one decimal (``+`` in front when ``signed``); ``missing`` for None or
    NaN, ``exact`` for +inf (an exact result), ``minus`` as the minus sign."""
    if x is None or math.isnan(x):
        return missing
    if math.isinf(x):
        return (("+" if signed else "") + exact) if x > 0 else f"{minus}inf"
    return (f"{x:+.1f}" if signed else f"{x:.1f}").replace("-", minus)


def _db(x: float | None) -> str:
    return db_text(x)


def _signed_db(x: float | None) -> str:
    return db_text(x, signed=True)


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def render_plan_comparison(c: PlanComparison, kind: str = "accumulated") -> str:
    """The per-layer deltas as a text table (changed layers marked with ``*``)."""
    from bitlens.core.units import format_bytes

    rows = [("layer", "A", "B", f"{kind} A", f"{kind} B", "Δ dB", "Δ bytes")]
    for d in c.layers:
        sa, sb = d.sqnr(kind)
        delta = d.delta_db(kind)
        db = d.delta_bytes
        rows.append((
            ("* " if d.changed else "  ") + d.name, d.choice_a, d.choice_b, _db(sa), _db(sb),
            f"{_signed_db(delta)} {verdict(delta)}".strip(), "-" if db is None else f"{db:+d}",
        ))  # fmt: skip
    lines = ["plan B against plan A (Δ = B - A; dB: higher is better, bytes: lower is better)"]
    lines += _table(rows)
    lines.append("")
    for o in c.outputs:
        lines.append(f"output {o.name}: SQNR A {_db(o.sqnr_a)} dB, B {_db(o.sqnr_b)} dB "
                     f"(Δ {_signed_db(o.delta_db)} dB, {verdict(o.delta_db) or 'n/a'})")  # fmt: skip
    for k, (ma, mb) in c.metrics.items():
        lines.append(f"{k}: A {_pct(ma)}, B {_pct(mb)}")
    lines.append(
        f"weights: A {format_bytes(c.bytes_a)}, B {format_bytes(c.bytes_b)} "
        f"(Δ {'-' if c.delta_bytes < 0 else '+'}{format_bytes(abs(c.delta_bytes))}); "
        f"{len(c.changed)} of {len(c.layers)} layers differ"
    )
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def render_model_comparison(c: ModelComparison) -> str:
    rows = [("layer", "op", "shape", "rel L2 diff", "SQNR", "max |diff|", "plan format",
             "w SQNR model", "w SQNR other")]  # fmt: skip
    for d in c.layers:
        shape = " ".join("x".join(map(str, s)) for s in d.shapes_a) or "-"
        if not d.same_shape:
            shape += " vs " + (" ".join("x".join(map(str, s)) for s in d.shapes_b) or "-")
        op = d.op_a if d.op_a == d.op_b else f"{d.op_a}/{d.op_b}"
        e = d.diff
        rows.append((
            d.name, op, shape,
            "-" if e is None else f"{e.rel_l2:.3g}", "-" if e is None else _db(e.sqnr_db),
            "-" if e is None else f"{e.max_abs:.3g}", d.format or "-", _db(d.sqnr_a), _db(d.sqnr_b),
        ))  # fmt: skip
    lines = [f"weights of {c.path_b} (other) against {c.path_a} (model): {len(c.layers)} layers "
             "matched by name; SQNR of the difference, and each one's weight SQNR in the plan's "
             "format"]  # fmt: skip
    lines += _table(rows)
    lines += _unmatched("only in the model", c.only_a) + _unmatched("only in the other", c.only_b)
    lines += [f"note on the other model: {n}" for n in c.notes_b]
    return "\n".join(lines)


def _unmatched(label: str, names: Iterable[str]) -> list[str]:
    names = list(names)
    if not names:
        return []
    shown = ", ".join(names[:20]) + (f", … ({len(names) - 20} more)" if len(names) > 20 else "")
    return [f"{len(names)} layers {label}: {shown}"]


def compare_with_file(
    path: str | Path, model: LoadedModel, plan: Plan | None = None
) -> Generator[Progress, None, ModelComparison]:
    """Load the model at ``path`` (cancellable between chunks) and compare ``model`` with it;
    a quantized file (an export) is compared by its dequantized weights."""
    from bitlens.core.model.dequantized import dequantized
    from bitlens.core.model.loader import iter_load_model

    p = Path(path)
    yield Progress(0, 3, f"loading {p.name}")
    other = yield from iter_load_model(p)
    yield Progress(1, 3, "decoding quantized weights")
    other = dequantized(other)
    yield Progress(2, 3, "comparing weights")
    return compare_models(model, other, plan)
