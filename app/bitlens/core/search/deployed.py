"""A plan's output error as deployed: its export in a default ONNX Runtime session.

The search ranks plans by the engine's simulation, which ONNX Runtime optimizes as it
optimizes any graph; the exported file gets other integer kernels (MatMulIntegerToFloat,
QGemm, QLinearConv) whose rounding differs. On khmersm's transformer at the W8A8 size the
simulation put four int8-symmetric activation swaps at 0.0031 relative error against
W8A8's 0.0036; the exported files measured 0.0040 and 0.0036 in a default session (the
deployed kernels can differ from the simulation by half the quantization error itself).
Near a size budget the plans compared differ by that much, so the last choice between a
few plans that fit is made on the files a user deploys (:mod:`bitlens.core.export.deployed`
opens them as a user's ONNX Runtime does).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.engine import Engine
from bitlens.core.errors import BitlensError
from bitlens.core.export.deployed import open_session
from bitlens.core.export.exporter import export
from bitlens.core.plan import Plan
from bitlens.core.results import Progress, drain
from bitlens.core.search.measures import output_error
from bitlens.core.search.points import Point
from bitlens.core.targets import ORT_CPU
from bitlens.core.usermetric import Metric, concat_outputs

if TYPE_CHECKING:
    from bitlens.core.search.state import SearchState

# Plans that fit a size budget compared as deployed, best simulated first (each is one
# export and one session more), besides the best one with its activation swaps undone.
DEPLOYED_CHOICES = 2


class DeployedErrors:
    """Output errors of plans' exports run in a default session, cached per plan."""

    def __init__(
        self,
        engine: Engine,
        reference: dict[str, np.ndarray],
        metric: Metric | None = None,
        labels: np.ndarray | None = None,
    ):
        self.engine = engine
        self.reference = reference
        self.metric = metric
        self.labels = labels
        self._errors: dict[Plan, tuple[float, float | None] | None] = {}

    def error(self, plan: Plan) -> tuple[float, float | None] | None:
        """The relative L2 error of ``plan``'s deployed outputs against the float model's on
        the evaluation samples (as the search measures the simulation) and the task metric
        on them; None: the plan cannot be exported or loaded."""
        if plan in self._errors:
            return self._errors[plan]
        engine = self.engine
        names = [t.name for t in engine.info.outputs]
        got: dict[str, list[np.ndarray]] = {n: [] for n in names}
        err: tuple[float, float | None] | None
        try:
            with tempfile.TemporaryDirectory(prefix="bitlens-search-") as tmp:
                path = Path(tmp) / "plan.onnx"
                drain(export(engine, plan, path))
                sess = open_session(str(path), list(engine.providers), mode="deployed")
                for i in engine.data.evaluation:
                    values = sess.run(names, engine.data.samples[i])
                    for n, v in zip(names, values, strict=True):
                        got[n].append(v)
                del sess
            out = concat_outputs(got)
            metric = None if self.metric is None else self.metric(out, self.reference, self.labels)
            err = (output_error(self.reference, out), metric)
        except BitlensError:
            err = None
        self._errors[plan] = err
        return err


def deployed_choice(
    s: SearchState, fits: list[Point], budget: int
) -> Generator[Progress | Point, None, Point]:
    """The plan to return among ``fits`` (plans whose export fits ``budget``, best simulated
    first) and the first one with its 8-bit activation swaps undone: the best as deployed,
    by the search's ranking (task metric up to the float model's, then output error)."""
    if not s.opts.deployed_check or s.opts.target != ORT_CPU:
        return fits[0]
    cands = list(fits)
    undone = _swaps_undone(s, fits[0].plan)
    if undone is not None:
        q = s.point(undone)
        yield q
        real = s.size.exported(undone)
        if real is not None and real <= budget:
            cands.append(replace(q, exported_bytes=real))
    if len(cands) == 1:
        return cands[0]
    if s.deployed is None:
        s.deployed = DeployedErrors(s.engine, s.ref, s.metric, s.labels)
    top = s.float_metric if s.float_metric is not None else math.inf
    scored = []
    for i, p in enumerate(cands):
        got = s.deployed.error(p.plan)
        s.total += 1
        yield s._tick("comparing the best plans as deployed")
        if got is not None:
            err, met = got
            key = -min(met, top) if met is not None else 0.0
            scored.append((key, err, i, replace(p, deployed_error=err)))
    return min(scored)[3] if scored else cands[0]


def _swaps_undone(s: SearchState, plan: Plan) -> Plan | None:
    """``plan`` with every free 8-bit activation swap back at the base format (the wide
    activations and pins kept); None when it has none."""
    base = s.base_act
    if base is None:
        return None
    choices = dict(plan.choices)
    changed = False
    for name, c in plan.choices.items():
        a = c.activation
        swapped = a is not None and a != base
        if swapped and name in s.act and name not in s.wide and name not in s.pins:
            choices[name] = replace(c, activation=base)
            changed = True
    return s.plan_for(choices) if changed else None
