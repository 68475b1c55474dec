"""Local errors: each quantized layer run alone on the float values that enter it, so
its error is its own and not what upstream layers passed on."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING

import numpy as np
import onnx

from bitlens.core import metrics
from bitlens.core.engine import rewrite
from bitlens.core.engine.graphs import node_producing, producers
from bitlens.core.engine.measure import PARALLEL_MIN_VALUES
from bitlens.core.engine.session import make_session
from bitlens.core.model import tensors
from bitlens.core.plan import Plan
from bitlens.core.results import TensorError

if TYPE_CHECKING:
    from bitlens.core.data import Dataset
    from bitlens.core.engine.store import RefView
    from bitlens.core.model.loader import LoadedModel
    from bitlens.core.model.types import ModelInfo

BULK_LOCAL_MIN = 4  # layers whose local error is due at once: from here, one graph for all
# A re-evaluation's local errors go aside (LocalErrors._local_errors_aside) when a session is
# to be built or a layer's output over the evaluation feeds has this many values: the size
# from which measuring splits over two threads too (measure.PARALLEL_MIN_VALUES).
ASIDE_MIN_VALUES = PARALLEL_MIN_VALUES
# The local graphs declare their captured inputs with the dims the reference's values have
# (rewrite.build_local's input_dims); False: of unknown dims, the straightforward way.
LOCAL_DIMS = True


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
    _local_first = False  # True while _local_errors_first runs them

    def _local_session(self, layer: str, kind: str | None):
        """The session computing ``layer`` alone from float inputs (built once per kind)."""
        key = (layer, kind)
        if key not in self._local_sessions:
            ref = self._ensure_ref()
            proto = rewrite.build_local(
                self.model.graph_proto, self.info, {layer: kind}, ref.types, self._constant,
                [layer], self._input_dims(ref),
            )  # fmt: skip
            self._local_sessions[key] = make_session(proto, self.device)
        return self._local_sessions[key]

    def _input_dims(self, ref: RefView) -> Callable[[str], tuple | None] | None:
        """The local graphs' input dims as the model's shape inference names them: an int
        where the float reference's values have it on every feed (RefView.dims), a name
        (the batch's "N") as a name; the others unknown. A dim the data can change (the
        rows: the plan search adds feeds of held-back rows, Dataset.rows_apart splits
        feeds) is not fixed, since the sessions outlive a change of data. None with
        LOCAL_DIMS off."""
        if not LOCAL_DIMS:
            return None
        inferred = self.info.value_info

        def dims(name: str) -> tuple[int | str | None, ...] | None:
            seen, t = ref.dims(name), inferred.get(name)
            if seen is None or t is None or t.shape is None or len(t.shape) != len(seen):
                return None
            return tuple(
                d if isinstance(d, str) or (isinstance(d, int) and d == s) else None
                for d, s in zip(t.shape, seen, strict=True)
            )

        return dims

    def _constant(self, name: str) -> np.ndarray:
        """A main-graph constant (bias, shape...) in its stored type, for the local graphs."""
        g = self.model.graph_proto.graph
        for t in g.initializer:
            if t.name == name:
                return self.model.tensor_value(t)
        node = self._producers.get(name) if rewrite.INDEXED_LOCAL else None
        if node is None:
            _, node = node_producing(g, name)
        return tensors.constant_value(node)

    @cached_property
    def _producers(self) -> dict[str, onnx.NodeProto]:
        """graphs.producers of the model's main graph, for :meth:`_constant`: a local graph
        reads a constant per layer (a bias, a shape), each found by a scan of the nodes."""
        return producers(self.model.graph_proto.graph)

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

    def _local_errors_aside(
        self, plan: Plan, layer_out: Mapping[str, str], feeds: Mapping[str, np.ndarray]
    ) -> Future | None:
        """:meth:`_local_errors` of a re-evaluation (fewer than BULK_LOCAL_MIN layers to run,
        each in its own one-layer session) started on the side thread (Runs._aside), None
        when there is nothing to run or the bulk graph runs. Its runs read only the plan's
        feeds and the float reference, never the plan's runs, so they go while the plan runs
        and is measured, instead of after it with a core idle: a one-layer session's build
        (5-13 ms on the CRNN the first time a layer changes kind) and its runs leave the
        critical path. The sums are the same (same session, same feeds, in the same order).
        Take the result with :meth:`_local_errors_done`."""
        _, todo = self._local_todo(plan, layer_out)
        if not todo or len(todo) >= BULK_LOCAL_MIN:
            return None
        # Only work that leaves the interpreter lock gains from the other core: a session to
        # build, or a layer output large enough that its run and sums do; a small one's
        # Python (feeds, sums) only waits on the lock against the plan's own (measured on the
        # CRNN: the late layers' int2 changes, whose sessions were built, ran 5-15% slower).
        kinds = self._kinds(plan)
        ref, ev = self._ensure_ref(), self.data.evaluation
        if all(
            (name, kinds.get(name)) in self._local_sessions
            and sum(ref.size(layer_out[name], i) for i in ev) < ASIDE_MIN_VALUES
            for name in todo
        ):
            return None
        return self._aside(partial(self._local_errors, plan, layer_out, feeds))

    def _local_errors_done(
        self,
        aside: Future | None,
        plan: Plan,
        layer_out: Mapping[str, str],
        feeds: Mapping[str, np.ndarray],
        ahead: LocalAhead | None = None,
    ) -> dict[str, TensorError]:
        """The local errors :meth:`_local_errors_aside` started, or computed here when it did
        not start them, or the side thread has not begun them yet (its earlier jobs, e.g.
        part sessions built ahead, still run: waiting would cost more than the work)."""
        if aside is not None and not aside.cancel():
            return aside.result()
        return self._local_errors(plan, layer_out, feeds, ahead)

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
        self._local_first = True  # read by Engine._arena_ahead's job
        try:
            return self._local_errors(plan, layer_out, feeds)
        finally:
            self._local_first = False

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
        ref = self._ensure_ref()
        proto = rewrite.build_local(
            self.model.graph_proto,
            self.info,
            {n: kinds.get(n) for n in names},
            ref.types,
            self._constant,
            list(names),
            self._input_dims(ref),
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
