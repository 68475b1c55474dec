"""Local errors: each quantized layer run alone on the float values that enter it, so
its error is its own and not what upstream layers passed on."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core import metrics
from bitlens.core.engine import rewrite
from bitlens.core.engine.graphs import node_producing
from bitlens.core.engine.session import make_session
from bitlens.core.model import tensors
from bitlens.core.plan import Plan
from bitlens.core.results import TensorError

if TYPE_CHECKING:
    from bitlens.core.data import Dataset
    from bitlens.core.model.loader import LoadedModel
    from bitlens.core.model.types import ModelInfo

BULK_LOCAL_MIN = 4  # layers whose local error is due at once: from here, one graph for all


@dataclass(frozen=True)
class LocalAhead:
    """The bulk local session of ``names``, being built on the side thread."""

    names: tuple[str, ...]
    session: Future


class LocalErrors:
    """Mixin: ``_local_errors`` of a plan's quantized layers, cached per layer choice."""

    model: LoadedModel
    info: ModelInfo
    data: Dataset
    device: str
    _local_sessions: dict[tuple[str, str | None], object]
    _local: dict[tuple[str, tuple, str], TensorError]
    _aside: Callable[[Callable[[], object]], Future | None]

    def _local_session(self, layer: str, kind: str | None):
        """The session computing ``layer`` alone from float inputs (built once per kind)."""
        key = (layer, kind)
        if key not in self._local_sessions:
            types = self._ensure_ref().types
            proto = rewrite.build_local(
                self.model.graph_proto, self.info, {layer: kind}, types, self._constant, [layer]
            )
            self._local_sessions[key] = make_session(proto, self.device)
        return self._local_sessions[key]

    def _constant(self, name: str) -> np.ndarray:
        """A main-graph constant (bias, shape...) in its stored type, for the local graphs."""
        g = self.model.graph_proto.graph
        for t in g.initializer:
            if t.name == name:
                return self.model.tensor_value(t)
        _, node = node_producing(g, name)
        return tensors.constant_value(node)

    def _local_todo(
        self, plan: Plan, layer_out: Mapping[str, str]
    ) -> tuple[dict[str, tuple], list[str]]:
        """The cache key of each quantized main-graph layer's local error, and the layers
        whose error is not cached."""
        keys = {
            name: (name, self._choice_key(plan, name), self.method.value)
            for name in plan.choices
            if name in layer_out
        }
        return keys, [name for name, key in keys.items() if key not in self._local]

    def _local_ahead(self, plan: Plan, layer_out: Mapping[str, str]) -> LocalAhead | None:
        """The bulk local graph's session for ``plan`` started on the side thread (Runs._aside)
        when :meth:`_local_errors` will need one; None otherwise."""
        _, todo = self._local_todo(plan, layer_out)
        if len(todo) < BULK_LOCAL_MIN:
            return None
        kinds = self._kinds(plan)
        names = tuple(todo)
        built = self._aside(lambda: self._bulk_local_session(names, kinds))
        return None if built is None else LocalAhead(names, built)

    def _local_errors_first(
        self,
        plan: Plan,
        layer_out: Mapping[str, str],
        feeds: Mapping[str, np.ndarray],
        ahead: LocalAhead | None,
        building: object,
    ) -> dict[str, TensorError] | None:
        """The local errors before the plan's runs, when those wait for the whole graph's
        session (``building``: its Future) that the side thread is still building and the
        side thread has not started on the local session (``ahead``): the main thread builds
        that session itself and runs them meanwhile, since they read only the float
        reference and the quantized weights. A first W8A8 evaluation of PP-OCRv4 rec
        (rapidocr-onnxruntime 1.4.4) otherwise left the main thread waiting for the W8A8
        session (docs/benchmarks.md, "openfast"). None when not (they run after the plan's
        runs, as they did)."""
        if ahead is None or not isinstance(building, Future) or building.done():
            return None
        if not ahead.session.cancel():  # the side thread builds it already
            return None
        return self._local_errors(plan, layer_out, feeds)

    def _local_errors(
        self,
        plan: Plan,
        layer_out: Mapping[str, str],
        feeds: Mapping[str, np.ndarray],
        ahead: LocalAhead | None = None,
    ) -> dict[str, TensorError]:
        """Local error of every quantized main-graph layer, running only the changed ones;
        ``ahead``: the bulk session :meth:`_local_ahead` started for ``plan``."""
        ref = self._ensure_ref()
        keys, todo = self._local_todo(plan, layer_out)
        kinds = self._kinds(plan)
        if len(todo) >= BULK_LOCAL_MIN:
            session = (
                ahead.session.result()
                if ahead is not None and ahead.names == tuple(todo)
                else self._bulk_local_session(todo, kinds)
            )
            self._bulk_local_errors(todo, {n: keys[n] for n in todo}, session, layer_out, feeds)
            todo = []
        for name in todo:
            key = keys[name]
            session = self._local_session(name, kinds.get(name))
            fetch = rewrite.local_output(layer_out[name])
            reads = [i.name for i in session.get_inputs() if i.name in ref]
            sums = metrics.ErrorSums()
            for i, (value,) in self._runs(
                session,
                [fetch],
                lambda i, reads=reads: {**feeds, **{k: ref[k][i] for k in reads}},
                self.data.evaluation,
            ):
                sums.add(ref[layer_out[name]][i], value)
                del value  # before the run after next starts (Runs._runs)
            self._local[key] = sums.result()
        return {name: self._local[key] for name, key in keys.items() if key in self._local}

    def _bulk_local_session(self, names: Sequence[str], kinds: Mapping[str, str | None]):
        """The session of one graph holding a copy of each of ``names`` (46 one-layer
        sessions cost 4x a forward pass on a CRNN; this one, 1x). Built for this set of
        layers and kinds, and not kept."""
        proto = rewrite.build_local(
            self.model.graph_proto,
            self.info,
            {n: kinds.get(n) for n in names},
            self._ensure_ref().types,
            self._constant,
            list(names),
        )
        return make_session(proto, self.device)

    def _bulk_local_errors(
        self,
        names: Sequence[str],
        keys: Mapping[str, tuple],
        session,
        layer_out: Mapping[str, str],
        feeds: Mapping[str, np.ndarray],
    ) -> None:
        """Local errors of many layers at once: ``session`` (:meth:`_bulk_local_session`
        of ``names``), one run per feed."""
        ref = self._ensure_ref()
        reads = [i.name for i in session.get_inputs() if i.name in ref]
        fetch = [rewrite.local_output(layer_out[n]) for n in names]
        sums = {n: metrics.ErrorSums() for n in names}
        for i, values in self._runs(
            session,
            fetch,
            lambda i, reads=reads: {**feeds, **{k: ref[k][i] for k in reads}},
            self.data.evaluation,
        ):
            for n, value in zip(names, values, strict=True):
                sums[n].add(ref[layer_out[n]][i], value)
            del values, value  # before the run after next starts (Runs._runs)
        for n in names:
            self._local[keys[n]] = sums[n].result()
