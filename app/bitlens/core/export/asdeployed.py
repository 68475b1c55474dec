"""Evaluate a plan *as deployed*: the integer kernels' numbers, not the fake-quant simulation.

ONNX Runtime's fused kernels (QLinearConv, QLinearAdd, ...) requantize their
int32 accumulators with fixed-point multipliers; each kernel is within one
step of the float Q/DQ simulation, but through tens of layers the steps add
up. This runner exports the plan (the engine's weights and calibrated
ranges, exactly what ``bitlens export`` would write), opens it in a default
ONNX Runtime session, cached per plan, and runs the evaluation samples: its
outputs are the deployed model's, bit for bit, and are compared with the
simulation's and the float model's. Layer by layer, the deployed model's
values at each layer output are compared with the simulation's
(:mod:`bitlens.core.export.layerdiff`).
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core import metrics
from bitlens.core.engine.session import make_session
from bitlens.core.export import layerdiff
from bitlens.core.export.deployed import open_session, optimized_model
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.layerdiff import LayerDifference, Probe
from bitlens.core.model.tensors import is_tensor_value
from bitlens.core.plan import Plan
from bitlens.core.results import Progress, TensorError

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


@dataclass(frozen=True)
class DeployedReport:
    """A plan evaluated as deployed: per output and per layer, deployed against simulated."""

    plan: Plan
    outputs: tuple[DeployedOutput, ...]
    layers: tuple[LayerDifference, ...]
    # The per-layer values come from ONNX Runtime's optimized graph re-run as saved; True when
    # its model outputs equalled the default session's bit for bit on every sample.
    layers_verified: bool
    providers: tuple[str, ...]

    @property
    def exact(self) -> bool:
        return all(o.exact for o in self.outputs)

    def layer(self, name: str) -> LayerDifference | None:
        return next((la for la in self.layers if la.layer == name), None)

    def to_dict(self) -> dict[str, object]:
        return {
            "outputs": [o.to_dict() for o in self.outputs],
            "layers": [la.to_dict() for la in self.layers],
            "layers_verified": self.layers_verified,
            "providers": list(self.providers),
        }


@dataclass
class _Deployed:
    session: object  # the default ONNX Runtime session of the export
    probes: list[Probe]
    probe_session: object  # ONNX Runtime's optimized graph, layer outputs exposed, run as saved


class DeployedRunner:
    """Runs plans as deployed for one engine; not thread-safe (one worker)."""

    def __init__(self, engine: Engine, options: ExportOptions | None = None):
        self.engine = engine
        self.options = options or ExportOptions()
        self._tmp = tempfile.TemporaryDirectory(prefix="bitlens-deployed-")
        self._built: OrderedDict[Plan, _Deployed] = OrderedDict()
        self._count = 0

    def close(self) -> None:
        self._built.clear()
        self._tmp.cleanup()

    def session(self, plan: Plan):
        """A default ONNX Runtime session of ``plan`` as exported (built once per plan)."""
        gen = self._build(plan)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return stop.value.session

    def _build(self, plan: Plan) -> Generator[Progress, None, _Deployed]:
        if plan in self._built:
            self._built.move_to_end(plan)
            return self._built[plan]
        self._count += 1
        path = Path(self._tmp.name) / f"plan{self._count}.onnx"
        result = yield from export(self.engine, plan, path, self.options)
        providers = list(self.engine.providers)
        yield Progress(0, 1, "opening the export in ONNX Runtime")
        sess = open_session(str(path), providers, mode="deployed")
        optimized = optimized_model(str(path), providers)
        path.unlink(missing_ok=True)
        found = layerdiff.plan_probes(self.engine.info, optimized, result.tensor_quantizers)
        probe = open_session(layerdiff.probe_model(optimized, found), providers, mode="written")
        built = _Deployed(sess, found, probe)
        self._built[plan] = built
        while len(self._built) > CACHED_SESSIONS:
            self._built.popitem(last=False)
        return built

    def outputs(self, plan: Plan) -> dict[str, list[np.ndarray]]:
        """Model outputs of the deployed export on the evaluation samples."""
        sess = self.session(plan)
        names = [t.name for t in self.engine.info.outputs if is_tensor_value(t)]
        out: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for i in self.engine.data.evaluation:
            for n, v in zip(names, sess.run(names, self.engine.data.samples[i]), strict=True):
                out[n].append(v)
        return out

    def compare(self, plan: Plan) -> list[DeployedOutput]:
        """Each output: the simulation's and the deployed model's error against float."""
        gen = self.run(plan)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return list(stop.value.outputs)

    def run(self, plan: Plan) -> Generator[Progress, None, DeployedReport]:
        """Export ``plan`` (cached), run it as deployed on the evaluation samples and compare
        it with the simulation, per output and per layer; yields progress between samples."""
        engine = self.engine
        built = yield from self._build(plan)
        names = [t.name for t in engine.info.outputs if is_tensor_value(t)]
        sim, feeds = engine.simulation(plan)
        sim_sess = make_session(layerdiff.sim_model(sim.model, engine.info, built.probes),
                                engine.device)  # fmt: skip
        sim_fetch = list(dict.fromkeys(p.simulated for p in built.probes if p.deployed))
        dep_fetch = [p.deployed for p in built.probes if p.deployed]
        wanted = {i.name for i in sim_sess.get_inputs()}
        accs = {p.layer: layerdiff.Accumulator(p) for p in built.probes if p.deployed}
        got: dict[str, list[np.ndarray]] = {n: [] for n in names}
        verified = True
        samples = list(engine.data.evaluation)
        for k, i in enumerate(samples):
            yield Progress(k, len(samples), f"as deployed: sample {k + 1} of {len(samples)}")
            feed = engine.data.samples[i]
            deployed = dict(zip(names, built.session.run(names, feed), strict=True))
            values = built.probe_session.run([*names, *dep_fetch], feed)
            probed = dict(zip([*names, *dep_fetch], values, strict=True))
            verified &= all(np.array_equal(deployed[n], probed[n]) for n in names)
            run_feed = {k2: v for k2, v in {**feed, **feeds}.items() if k2 in wanted}
            # run([]) returns every output, not none: no layer probed (fused away), no run
            sims = dict(zip(sim_fetch, sim_sess.run(sim_fetch, run_feed), strict=True)) if (
                sim_fetch
            ) else {}  # fmt: skip
            # (the simulation graph with the layer values exposed; its quantizers are the
            # engine's, fed the same weights and parameters)
            for a in accs.values():
                a.add(probed[a.probe.deployed], sims[a.probe.simulated])
            for n in names:
                got[n].append(deployed[n])
        # the engine's own outputs: the numbers the window shows as simulated
        simulated = engine.run_outputs(plan)
        float_out = engine.run_outputs(Plan(plan.info, target=plan.target))
        rows = []
        for name in names:
            ref, sim_v, dep = (_flat(x[name]) for x in (float_out, simulated, got))
            rows.append(
                DeployedOutput(
                    name,
                    metrics.tensor_error(ref, sim_v),
                    metrics.tensor_error(ref, dep),
                    float(np.max(np.abs(dep.astype(np.float64) - sim_v))) if dep.size else 0.0,
                    bool(np.array_equal(dep, sim_v)),
                )
            )
        layers = tuple(
            accs[p.layer].result() if p.layer in accs else layerdiff.fused(p) for p in built.probes
        )
        yield Progress(len(samples), len(samples), "as deployed: done")
        return DeployedReport(plan, tuple(rows), layers, verified, tuple(engine.providers))


def _flat(values: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(v).ravel() for v in values])
