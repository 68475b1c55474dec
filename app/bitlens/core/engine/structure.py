"""Which simulation graph a plan runs: the deployment target's placement (cached per what
it depends on), the structure key of the graph (see engine.py), and the cache of
simulation graphs and their sessions per structure."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from functools import cached_property, partial
from typing import TYPE_CHECKING

from bitlens.core import lstm_kernel, targets
from bitlens.core.engine import float_outputs, lstm_nodes, prefix, quantizers, requantize, rewrite
from bitlens.core.engine.recovery_nodes import recovery_kind
from bitlens.core.engine.session import actual_providers, make_session
from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import Plan

if TYPE_CHECKING:
    import onnx

    from bitlens.core.model.loader import LoadedModel

# the float graph's structure: nothing quantized
FLOAT_KEY: tuple = ((), (), ())


class Structures:
    """Mixin of :class:`~bitlens.core.engine.engine.Engine`: ``placement``, ``_kinds``,
    ``_structure``, ``_structure_of``, and the graphs and sessions per structure
    (``_sim_for``, ``_session_for``, ``providers``)."""

    info: ModelInfo
    model: LoadedModel
    device: str
    max_sessions: int
    # structure -> [simulation graph, session, its build on the side thread (a Future) or None]
    _sessions: OrderedDict[tuple, list]
    _cuts: dict[tuple, prefix.Cuts | None]
    _prefix_values: prefix.PrefixValues
    reuse_prefix: bool
    _aside: Callable[[Callable[[], object]], Future | None]
    _providers: tuple[str, ...]
    _positions: dict[str, int]
    _float_tensors: list[str]
    _float_own: int  # the float graph's outputs before every float tensor (_sim_for)
    _float_run_model: Callable[[rewrite.SimGraph], onnx.ModelProto]  # FloatReference's
    skip_redundant: bool  # False: keep every layer quantizer (the straightforward graph)
    fold_relus: bool  # False: keep a Relu read only by a quantizer (relu_fold.py)
    # Per-tensor integer quantizers as real Q/Clip/DQ nodes (quantizers.engine_kind); False:
    # the float chain everywhere (the straightforward graph, for tests)
    qdq_quantizers = True
    _placements: OrderedDict[object, dict[str, targets.TensorQuantizer]]
    _attribute: Callable[..., object | None]
    scalar: targets.Scalar

    def placement(self, plan: Plan) -> dict[str, targets.TensorQuantizer]:
        """The tensors ``plan.target`` quantizes besides the layer inputs (cached per plan)."""
        if plan in self._placements:
            self._placements.move_to_end(plan)
            return self._placements[plan]
        # then per what the placement depends on: most weight changes keep it
        key = targets.placement_key(plan)
        found = self._placements.get(key)
        if found is None:
            found = targets.placement(plan, self._attribute, self.scalar)
        for k in (plan, key):
            self._placements[k] = found
        while len(self._placements) > 128:
            self._placements.popitem(last=False)
        return found

    def _kinds(self, plan: Plan | None) -> dict[str, str | None]:
        """The quantizer kind of each layer the plan quantizes or recovers (the graph's nodes)."""
        if plan is None:
            return {}
        return {
            name: lstm_nodes.KIND
            if choice.dynamic and lstm_kernel.runs_kernel(self.info.layer(name), choice, plan.target)
            else recovery_kind(
                self.info.layer(name), choice, self._engine_kind(choice.activation, choice.dynamic)
            )
            for name, choice in plan.choices.items()
            if choice.activation is not None or choice.recovery is not None
        }

    def _engine_kind(self, fmt, dynamic: bool) -> str | None:
        return quantizers.engine_kind(fmt, dynamic, self.info.opset, self.qdq_quantizers)

    @staticmethod
    def _structure(
        kinds: Mapping[str, str | None], tensors: Sequence[str] = (), skip: Sequence = ()
    ) -> tuple:
        """The key of a simulation graph: layers' quantizer kinds, the target's tensors, the
        layer quantizers left out (requantize.py)."""
        return (tuple(sorted((k, v) for k, v in kinds.items() if v)), tuple(tensors), tuple(skip))

    def _structure_of(self, plan: Plan) -> tuple[dict[str, str | None], tuple, tuple]:
        """``_sim_for``'s arguments for ``plan``."""
        placed = self.placement(plan)
        skip = (
            requantize.redundant_quantizers(self.info, plan.choices, placed)
            if self.skip_redundant
            else ()
        )
        # In graph order (name among one node's outputs), not the placement's: plans whose
        # target quantizes the same tensors in another order (a first layer at int4 leaves
        # its output to a later pass) are the same graph, not a new structure (sim graph,
        # cuts and sessions built again: 15-30 ms on a CRNN).
        pos = self._positions
        tensors = tuple(sorted(placed, key=lambda t: (pos.get(t, -1), t)))
        return self._kinds(plan), tensors, skip

    @property
    def providers(self) -> tuple[str, ...]:
        """Providers the sessions actually run on (after the first session is built)."""
        if not self._providers:
            self._session_for({})
        return self._providers

    def _sim_for(
        self, kinds: Mapping[str, str | None], tensors: Sequence[str] = (), skip: Sequence = ()
    ) -> tuple[tuple, rewrite.SimGraph]:
        """The structure's key and simulation graph (built once; its session only when a
        run needs the whole graph, see _session_for)."""
        key = self._structure(kinds, tensors, skip)
        if key in self._sessions:
            self._sessions.move_to_end(key)
            return key, self._sessions[key][0]
        base = self._sim_base
        sim = rewrite.build_sim(
            self.model.graph_proto,
            self.info,
            dict(key[0]),
            key[1],
            key[2],
            self.qdq_quantizers,
            base=base,
            fold=self.fold_relus,
        )
        cuts = prefix.find_cuts(sim.model, self.info, self._positions)
        if cuts is not None:  # every tensor crossing a cut is an output (see prefix.py)
            exposed = {v.name for v in sim.model.graph.output}
            sim.model.graph.output.extend(
                base.value_info(t) for t in cuts.tensors if t not in exposed
            )
        if key == FLOAT_KEY:  # the float graph: every float tensor, for min-max statistics
            self._float_own = len(sim.model.graph.output)  # its session declares fewer
            exposed = {v.name for v in sim.model.graph.output}
            sim.model.graph.output.extend(
                rewrite.value_info_for(self.info, t)
                for t in self._float_tensors
                if t not in exposed
            )
        self._cuts[key] = cuts
        self._sessions[key] = [sim, None]
        while len(self._sessions) > max(1, self.max_sessions):
            old, _ = self._sessions.popitem(last=False)
            self._cuts.pop(old, None)
        return key, sim

    @cached_property
    def _sim_base(self) -> rewrite.SimBase:
        """What every structure's simulation graph shares (rewrite.sim_base), with the
        external tensors it still refers to read in once: external weights stay in their
        files (fed from memory maps), the copies of it carry the rest."""
        base = rewrite.sim_base(
            self.model.graph_proto, self.info, tuple(self.measured_on.values())
        )
        self.model.materialize(base.model)
        return base

    def _session_for(
        self, kinds: Mapping[str, str | None], tensors: Sequence[str] = (), skip: Sequence = ()
    ):
        """(simulation graph, its session) of a structure."""
        key, sim = self._sim_for(kinds, tensors, skip)
        entry = self._sessions[key]
        if entry[1] is None:
            entry[1] = self._session_build(key, sim)()
        elif isinstance(entry[1], Future):  # built on the side thread (_session_ahead)
            entry[1] = entry[1].result()
        else:
            return sim, entry[1]
        self._providers = actual_providers(entry[1])
        return sim, entry[1]

    def _session_ahead(self, key: tuple, sim: rewrite.SimGraph) -> None:
        """Start building the structure's whole-graph session on the side thread when the
        next runs will need it: no value is kept to start from (reuse.py: the first
        evaluation after calibration, or the engine's prefix reuse off). The same model and
        options as :meth:`_session_for`'s, so the same numbers; it waits for the build."""
        entry = self._sessions[key]
        if entry[1] is not None:
            return
        if self.reuse_prefix and self._cuts.get(key) is not None and len(self._prefix_values):
            return  # runs may start at a cut, in a session of their own (reuse._tail_for)
        entry[1] = self._aside(self._session_build(key, sim))

    def _session_build(self, key: tuple, sim: rewrite.SimGraph) -> Callable[[], object]:
        """The build of a structure's whole-graph session, to call here or on the side
        thread. The float graph's session declares only what its runs fetch, with the
        fusions that would change values left out (float_outputs.py); its model is made
        on this thread (it reads the presets' placements, the engine's cache)."""
        if key == FLOAT_KEY and float_outputs.FEWER:
            model = self._float_run_model(sim)
            return partial(make_session, model, self.device, disabled=float_outputs.VALUE_FUSIONS)
        return partial(make_session, sim.model, self.device)
