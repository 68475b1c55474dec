"""Task metrics: the built-in accuracy and the user's own ``f(outputs, reference, labels)``.

A metric is a plain Python callable ``f(outputs, reference_outputs, labels) ->
float`` where ``outputs`` and ``reference_outputs`` map each model output name
to its values over the evaluation samples (concatenated along the batch
axis), ``labels`` is the evaluation labels (or None) and a *higher* result is
better. The callable's docstring names what it measures. ``--metric
module:function`` or ``--metric path/to/file.py:function`` loads one; the
evaluation, the sweep and the search then report it next to the built-in
figures.

A metric that raises, or returns something that is not a finite number,
stops the job with a :class:`~bitlens.core.errors.MetricError` whose
``details`` carry the traceback, so the window can show it.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import numpy as np

from bitlens.core.errors import MetricError
from bitlens.core.metrics import classifier_like

if TYPE_CHECKING:
    from bitlens.core.engine import Engine
    from bitlens.core.plan import Plan
    from bitlens.core.results import Evaluation

Outputs = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Metric:
    """A named task metric, higher is better."""

    name: str
    func: Callable[[Outputs, Outputs, np.ndarray | None], Any]
    description: str = ""
    builtin: bool = False

    def __call__(self, outputs: Outputs, reference: Outputs, labels: np.ndarray | None) -> float:
        try:
            value = self.func(outputs, reference, labels)
        except Exception as exc:
            raise MetricError(
                f"metric {self.name} raised {type(exc).__name__}: {exc}",
                traceback.format_exc(),
            ) from exc
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise MetricError(
                f"metric {self.name} returned {type(value).__name__}, not a number"
            ) from None
        if not math.isfinite(number):
            raise MetricError(f"metric {self.name} returned {number}, not a finite number")
        return number


def load_metric(spec: str) -> Metric:
    """Load ``module:function`` or ``path/to/file.py:function`` as a :class:`Metric`."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise MetricError(f"--metric expects module:function or file.py:function, got {spec!r}")
    module = _import(where, spec)
    func = getattr(module, name, None)
    if func is None:
        raise MetricError(f"metric {spec!r}: {where} has no attribute {name!r}")
    if not callable(func):
        raise MetricError(f"metric {spec!r}: {name} is not callable")
    doc = (getattr(func, "__doc__", None) or "").strip().splitlines()
    return Metric(name, func, doc[0] if doc else "")


def _import(where: str, spec: str) -> Any:
    path = Path(where)
    try:
        if where.endswith(".py") or path.is_file():
            if not path.is_file():
                raise MetricError(f"metric {spec!r}: no such file {where}")
            mod_name = f"bitlens_user_metric_{abs(hash(str(path.resolve())))}"
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise MetricError(f"metric {spec!r}: {where} cannot be imported")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            loader_spec.loader.exec_module(module)
            return module
        return importlib.import_module(where)
    except MetricError:
        raise
    except Exception as exc:  # the user's module failed to import: show why
        raise MetricError(
            f"metric {spec!r}: importing {where} failed: {type(exc).__name__}: {exc}",
            traceback.format_exc(),
        ) from exc


def _accuracy(outputs: Outputs, reference: Outputs, labels: np.ndarray | None) -> float:
    """Top-1 accuracy of the first output against the labels."""
    first = next(iter(outputs.values()))
    assert labels is not None
    return float(np.mean(np.argmax(first, -1) == labels))


ACCURACY = Metric("accuracy", _accuracy, "top-1 accuracy on the labels", builtin=True)


def default_metric(reference: Outputs, labels: np.ndarray | None) -> Metric | None:
    """The built-in accuracy when there are labels and the first output is a classifier's."""
    if labels is None or not reference:
        return None
    first = next(iter(reference.values()))
    return ACCURACY if classifier_like(first) and len(first) == len(labels) else None


def concat(values: Sequence[np.ndarray]) -> np.ndarray:
    """Per-sample outputs as one array: along the batch axis when shapes allow, else flat."""
    arrs = [np.asarray(v) for v in values]
    if len(arrs) == 1:
        return arrs[0]
    if all(a.ndim >= 1 for a in arrs):
        try:
            return np.concatenate(arrs, axis=0)
        except ValueError:
            pass
    return np.concatenate([a.ravel() for a in arrs])


def concat_outputs(per_sample: Mapping[str, Sequence[np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: concat(values) for name, values in per_sample.items()}


def evaluate_with(engine: Engine, plan: Plan, metric: Metric | None) -> Evaluation:
    """``engine.evaluate(plan)`` with the user's metric (and its float value) added to
    ``task_metric`` as ``NAME`` and ``NAME_float``."""
    ev = engine.evaluate(plan)
    if metric is None:
        return ev
    return replace(ev, task_metric={**ev.task_metric, **metric_values(engine, plan, metric)})


# engine -> (before_pick -> float outputs on its evaluation samples), computed once per
# engine (and data).
_REFERENCE: WeakKeyDictionary[Engine, dict[bool, dict[str, np.ndarray]]] = WeakKeyDictionary()


def reference_outputs(engine: Engine, before_pick: bool = False) -> dict[str, np.ndarray]:
    """The float model's outputs on the evaluation samples (cached per engine);
    ``before_pick``: as Engine.run_outputs'."""
    from bitlens.core.plan import Plan as _Plan

    kept = _REFERENCE.setdefault(engine, {})
    ref = kept.get(before_pick)
    if ref is None:
        ref = kept[before_pick] = concat_outputs(
            engine.run_outputs(_Plan(engine.info), before_pick=before_pick)
        )
    return ref


def metric_values(engine: Engine, plan: Plan, metric: Metric) -> dict[str, float]:
    labels = engine.data.eval_labels
    reference = reference_outputs(engine)
    got = concat_outputs(engine.run_outputs(plan))
    return {
        metric.name: metric(got, reference, labels),
        f"{metric.name}_float": metric(reference, reference, labels),
    }
