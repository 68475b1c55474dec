"""Which simulation graph a plan runs: the deployment target's placement (cached per what
it depends on) and the structure key of the graph (see engine.py)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

from bitlens.core import targets
from bitlens.core.engine import quantizers, requantize
from bitlens.core.engine.recovery_nodes import recovery_kind
from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import Plan


class Structures:
    """Mixin of :class:`~bitlens.core.engine.engine.Engine`: ``placement``, ``_kinds``,
    ``_structure`` and ``_structure_of``."""

    info: ModelInfo
    skip_redundant: bool  # False: keep every layer quantizer (the straightforward graph)
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
            name: recovery_kind(
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
        return self._kinds(plan), tuple(placed), skip
