"""Evaluate a plan *as deployed*: the integer kernels' numbers, not the fake-quant simulation.

ONNX Runtime's fused kernels (QLinearConv, QLinearAdd, ...) requantize their
int32 accumulators with fixed-point multipliers; each kernel is within one
step of the float Q/DQ simulation, but through tens of layers the steps add
up. This runner exports the plan (the engine's weights and calibrated
ranges, exactly what ``bitlens export`` would write), opens it in a default
ONNX Runtime session, cached per plan, and runs the evaluation samples: its
outputs are the deployed model's, bit for bit, and are compared with the
simulation's and the float model's.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core import metrics
from bitlens.core.export.deployed import open_session
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.plan import Plan
from bitlens.core.results import TensorError

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

CACHED_SESSIONS = 2


@dataclass(frozen=True)
class DeployedOutput:
    """One model output: simulated and deployed, each against float, and their difference."""

    name: str
    simulated: TensorError  # the engine's fake-quant simulation vs float
    deployed: TensorError  # the exported model in a default ONNX Runtime session vs float
    max_abs_difference: float  # max |deployed - simulated|
    exact: bool  # deployed == simulated, bit for bit

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "simulated_sqnr_db": self.simulated.sqnr_db,
            "deployed_sqnr_db": self.deployed.sqnr_db,
            "max_abs_difference": self.max_abs_difference,
            "exact": self.exact,
        }


class DeployedRunner:
    """Runs plans as deployed for one engine; not thread-safe (one worker)."""

    def __init__(self, engine: Engine, options: ExportOptions | None = None):
        self.engine = engine
        self.options = options or ExportOptions()
        self._tmp = tempfile.TemporaryDirectory(prefix="bitlens-deployed-")
        self._sessions: OrderedDict[Plan, object] = OrderedDict()

    def close(self) -> None:
        self._sessions.clear()
        self._tmp.cleanup()

    def session(self, plan: Plan):
        """A default ONNX Runtime session of ``plan`` as exported (built once per plan)."""
        if plan in self._sessions:
            self._sessions.move_to_end(plan)
            return self._sessions[plan]
        path = Path(self._tmp.name) / f"plan{len(self._sessions)}.onnx"
        gen = export(self.engine, plan, path, self.options)
        try:
            while True:
                next(gen)
        except StopIteration:
            pass
        providers = list(self.engine.providers)
        sess = open_session(str(path), providers, mode="deployed")
        path.unlink(missing_ok=True)
        self._sessions[plan] = sess
        while len(self._sessions) > CACHED_SESSIONS:
            self._sessions.popitem(last=False)
        return sess

    def outputs(self, plan: Plan) -> dict[str, list[np.ndarray]]:
        """Model outputs of the deployed export on the evaluation samples."""
        sess = self.session(plan)
        names = [t.name for t in self.engine.info.outputs]
        out: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for i in self.engine.data.evaluation:
            for n, v in zip(names, sess.run(names, self.engine.data.samples[i]), strict=True):
                out[n].append(v)
        return out

    def compare(self, plan: Plan) -> list[DeployedOutput]:
        """Each output: the simulation's and the deployed model's error against float."""
        float_out = self.engine.run_outputs(Plan(plan.info, target=plan.target))
        simulated = self.engine.run_outputs(plan)
        deployed = self.outputs(plan)
        rows = []
        for name in deployed:
            ref, sim, dep = (_flat(x[name]) for x in (float_out, simulated, deployed))
            rows.append(
                DeployedOutput(
                    name,
                    metrics.tensor_error(ref, sim),
                    metrics.tensor_error(ref, dep),
                    float(np.max(np.abs(dep.astype(np.float64) - sim))) if dep.size else 0.0,
                    bool(np.array_equal(dep, sim)),
                )
            )
        return rows


def _flat(values: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(v).ravel() for v in values])
