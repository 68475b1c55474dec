"""What a search returns: whole plans evaluated (points), their Pareto front, the result."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bitlens.core.plan import Plan
from bitlens.core.search.options import Budget

if TYPE_CHECKING:
    from bitlens.core.search.speed import PlanSpeed


@dataclass(frozen=True)
class Sensitivity:
    """One (layer, choice) measured alone: output error, task metric, bytes saved."""

    layer: str
    kind: str  # "weight" or "activation"
    format: str  # "float" keeps float
    error: float  # relative L2 error of the outputs
    metric: float | None
    bytes_saved: int  # against float weights (0 for activations: they are not stored)
    recovery: str | None = None  # the weights' recovery method (GPTQ...), None: plain rounding


@dataclass(frozen=True)
class Steering:
    """Whether the search held plans to a predicted deployed time (core/search/latency.py):
    one line for the user, W8A8's predicted time and the limit (None: not steered), both as
    ratios of the float model's time."""

    text: str
    w8a8: float
    limit: float | None
    # the plan returned is the weights-only search's, run beside the limited one where
    # W8A8's predicted saving is marginal (runner._marginal_steering): it runs at float's
    # speed, whatever the limit
    weights_only: bool = False

    def short(self) -> str:
        """The gist, for a narrow label: the ratios first."""
        w8a8 = f"W8A8 predicted x{self.w8a8:.2f} of float"
        if self.limit is None:
            return f"not steered{', weights only' if self.weights_only else ''}: {w8a8}"
        if self.weights_only:
            return f"weights only, float speed: {w8a8}"
        # "predicted": the panel's status line then gives the measured ratio, which differs
        # (ddddocr: kept to x0.58, measured x0.65) and read as the limit broken
        return f"kept to x{self.limit:.2f} of float, predicted (W8A8 x{self.w8a8:.2f})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "steered": self.limit is not None,
            "w8a8_predicted": self.w8a8,
            "limit": self.limit,
            "text": self.text,
            "weights_only": self.weights_only,
        }


@dataclass(frozen=True)
class Measuring:
    """Yielded once by a search, before its first plan: which rows its plans' errors are
    measured on and what they count, so that a live plot says so before the result does
    (the window's Find Plan panel: a hovered point's error read as on every evaluation row
    while the search ran, and a dB figure for an error counting changed labels)."""

    eval_rows: int  # rows of the evaluation feeds
    check_rows: int  # of them held back from the search (core/search/guard.py): not fitted
    label_outputs: tuple[str, ...] = ()  # as SearchResult.label_outputs

    @property
    def fitted_rows(self) -> int:
        return self.eval_rows - self.check_rows


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
    # the exported file's output error in a default ONNX Runtime session, where the search
    # measured it (its last choice under a size budget: core/search/deployed.py)
    deployed_error: float | None = None
    # the output error on the evaluation feeds the search held back (as deployed where
    # deployed_error is measured, else simulated): its last choice (core/search/guard.py)
    check_error: float | None = None
    check_metric: float | None = None  # the task metric there

    @property
    def sqnr_db(self) -> float:
        return -20.0 * math.log10(self.error) if self.error > 0 else math.inf

    def summary(self) -> str:
        """One line per kind of change: how many layers at which weight format."""
        counts: dict[str, int] = {}
        acts: dict[str, int] = {}
        for choice in self.plan.choices.values():
            if choice.weight is not None:
                name = choice.weight.name
                if choice.recovery is not None:
                    name += f" + {choice.recovery.value}"
                counts[name] = counts.get(name, 0) + 1
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
            "deployed_error": self.deployed_error,
            "check_error": self.check_error,
            "check_metric": self.check_metric,
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
    # evaluation rows held back from the search to check its last choice (the rest fit the
    # plans: core/search/guard.py); what the result says about them
    eval_rows: int = 0  # rows of the evaluation feeds
    check_rows: tuple[int, ...] = ()  # positions of the held-back ones among them
    notes: tuple[str, ...] = ()
    # the plan's deployed latency against float and W8A8, where it was exported and timed
    # (core/search/speed.py)
    speed: PlanSpeed | None = None
    # whether and how the plans were held to a predicted deployed time (None: no limit was
    # asked, the target is not ONNX Runtime CPU, or no plan has 8-bit unsigned activations)
    steering: Steering | None = None
    # ArgMax/ArgMin outputs, whose error is the fraction of labels that changed
    # (measures.output_error): the error is then no relative L2, and no dB figure reads it
    label_outputs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_outputs": list(self.label_outputs),
            "speed": None if self.speed is None else self.speed.to_dict(),
            "steering": None if self.steering is None else self.steering.to_dict(),
            "budget": self.budget.describe(),
            "seed": self.seed,
            "eval_rows": self.eval_rows,
            "check_rows": list(self.check_rows),
            "notes": list(self.notes),
            "metric": self.metric_name,
            "evaluations": self.evaluations,
            "float_bytes": self.float_bytes,
            "wide_activations": list(self.wide_layers),
            "best": self.best.to_dict(),
            "front": [p.to_dict() for p in self.front],
            "references": [p.to_dict() for p in self.references],
            "sensitivities": [vars(s) for s in self.sensitivities],
        }


def pareto_front(points: Iterable[Point], beaten_by: Iterable[Point] = ()) -> tuple[Point, ...]:
    """The points no other point beats on both bytes and error; bytes up, error strictly down.
    A point that one of ``beaten_by`` (the float model) beats is left off: a plan larger
    than the float file with a non-zero error is no trade-off."""
    refs = [(r.file_bytes, r.error) for r in beaten_by]
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.file_bytes, p.error)):
        if any(b <= p.file_bytes and e <= p.error and (b, e) != (p.file_bytes, p.error)
               for b, e in refs):  # fmt: skip
            continue
        if not front or p.error < front[-1].error:
            front.append(p)
    return tuple(front)
