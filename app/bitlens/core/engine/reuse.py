"""Runs of a plan that reuse what an earlier plan computed upstream of a change.

See :mod:`.prefix`: the evaluation runs the simulation graph from the cut of the first
layer whose result is not cached yet, fed with the kept values of the tensors entering
that part under the same prefix state, or the whole graph when they are not kept.
Either way it keeps the values of every cut tensor it computed, for the next plan.
"""

from __future__ import annotations

import weakref
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.engine import chain, prefix
from bitlens.core.engine.session import make_session
from bitlens.core.plan import Plan

if TYPE_CHECKING:
    from bitlens.core.data import Dataset
    from bitlens.core.engine.calibration import CalibrationMethod
    from bitlens.core.engine.rewrite import SimGraph

TAIL_SESSIONS = 8  # suffix sessions kept for re-evaluation (buffers: the shared arena)
# Kept values: at most this many times what one whole run computes at the cuts (a plan
# and the ones derived from it), and at most half the engine's activation budget.
STATES_KEPT = 2
_NOTHING_TO_RUN = 1 << 62  # a start past every node


class PrefixRuns:
    """Mixin: ``_plan_runs``, the evaluation feeds' values of a plan's outputs."""

    data: Dataset
    device: str
    method: CalibrationMethod
    reuse_prefix: bool  # False: always run the whole graph (the straightforward way)
    _cuts: dict[tuple, prefix.Cuts | None]
    _tails: OrderedDict[tuple, object]
    _part_sessions: OrderedDict[bytes, object]  # see chain.py
    _parts_built: set[tuple]  # structures whose parts _parts_ahead built (or is building)
    _parts_epoch: int  # counts drop_sessions/close: parts built ahead before them are not kept
    _parts_due: Callable[[], int] | None = None  # _parts_ahead's job, not started yet
    _prefix_values: prefix.PrefixValues
    _sessions: OrderedDict[tuple, list]  # structure -> [simulation graph, session or None]

    def _state_keys(self, plan: Plan, cuts: prefix.Cuts) -> tuple[list[int], int]:
        """Per layer in graph order, a key for everything that settles the values before its
        cut (earlier layers' choices, the target's quantizers on earlier tensors, the
        calibration); and the key after the last layer."""
        pos = self._positions
        placed = prefix.placed_in_order(self.placement(plan), pos)
        h, k = hash(("bitlens-prefix", self.method.value)), 0
        before: list[int] = []
        for here, name in zip(cuts.positions, cuts.order, strict=True):
            while k < len(placed) and placed[k][0] < here:
                h = hash((h, placed[k][1], placed[k][2]))
                k += 1
            before.append(h)
            h = hash((h, name, self._choice_key(plan, name)))
        for _, t, q in placed[k:]:
            h = hash((h, t, q))
        return before, h

    def _plan_runs(
        self,
        skey: tuple,
        sim: SimGraph,
        whole: Callable[[], object],
        plan: Plan,
        feeds: Mapping[str, np.ndarray],
        todo: Sequence[str],
        indices: Sequence[int] | None = None,
        at_run: Callable[[], object] | None = None,
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(i, values)`` per evaluation feed (or per feed of ``indices``): the model outputs
        and the outputs of the layers in ``todo`` (those whose errors are not cached) under
        ``plan``. ``whole()`` gives the session of the whole graph (built only when it runs).
        ``at_run()`` is called once, right before the first run (after the Python work of
        finding where to start and building its sessions)."""
        samples = self.data.samples
        ev = list(self.data.evaluation if indices is None else indices)
        wanted = list(
            dict.fromkeys([*self._output_fetch, *(sim.layer_outputs[n] for n in todo)])
        )
        cuts = self._cuts.get(skey) if self.reuse_prefix else None
        if cuts is None:
            sess = whole()
            if at_run is not None:
                at_run()
            for i, run in self._runs(
                sess, wanted, lambda i: {**samples[i], **feeds}, ev, ahead=True
            ):
                yield i, dict(zip(wanted, run, strict=True))
            return
        before, final = self._state_keys(plan, cuts)

        def key(t: str) -> tuple:
            at = bisect_right(cuts.positions, cuts.position[t])
            # No structure in the key: a tensor's value is settled by the prefix state alone,
            # so a plan with another structure (the target moved its quantizers around the
            # changed layer) still starts from what the plans before computed. The feeds are:
            # kept values are one array per feed run.
            return (t, before[at] if at < len(before) else final, feeds_key)

        feeds_key = tuple(ev)

        start, kept, tail = self._tail_for(skey, sim, cuts, key, wanted, todo)
        run_sess = whole() if tail is None and start != _NOTHING_TO_RUN else tail
        # A whole run (start 0) also fetches the outputs no node makes (index -1: a graph
        # input or an initializer listed as an output); a later start finds them kept.
        first = start if start > 0 else -1
        # from the first layer's cut on (or node 0) every layer runs: a whole run for the
        # kept values' budget (nodes before the first cut depend on no layer)
        whole_run = start <= chain.first_start(cuts)
        ran = [t for t in wanted if cuts.index.get(t, 0) >= first]
        keep = [t for t in cuts.tensors if cuts.index[t] >= start and t not in ran]
        fetch = [*ran, *keep]
        keepable = [t for t in fetch if t in cuts.position]
        store = self._prefix_values
        # Only the values that will be kept are held across feeds: which ones is settled by
        # their sizes, known from the first feed (the others' are counted as they come).
        # Holding every cut tensor of every feed until the last one ran put the whole
        # evaluation data's activations in memory at once, views pinning the arena: on
        # ddddocr's detector 407 MiB gathered to keep 16 (issue 11's memory row).
        size = dict.fromkeys(keepable, 0)
        gathered: dict[str, list[np.ndarray]] = {}
        ints: list[str] = []  # the integer cut tensors (PrefixValues.saw)
        where = {i: k for k, i in enumerate(ev)}

        def feeds_of(i: int) -> dict[str, np.ndarray]:
            return {**samples[i], **feeds, **{b: v[where[i]] for b, v in kept.items()}}

        if at_run is not None:
            at_run()
        runs = (
            self._runs(run_sess, fetch, feeds_of, ev, ahead=True)
            if fetch
            else ((i, []) for i in ev)
        )
        for i, run in runs:
            values = dict(zip(fetch, run, strict=True))
            if i == ev[0]:
                store.saw(values, keepable)
                ints = [t for t in keepable if values[t].dtype.kind in "iub"]
                guess = {t: values[t].nbytes * len(ev) for t in keepable}
                budget = _kept_budget(store, whole_run, sum(guess.values()))
                gathered = {t: [] for t in pick_cuts(cuts, start, guess, budget // STATES_KEPT)}
            else:
                store.saw(values, ints)  # the dims integer ones keep on every feed
            for t in keepable:
                size[t] += values[t].nbytes
            for t, vals in gathered.items():
                vals.append(values[t])
            for t in wanted:
                if t not in values:
                    values[t] = kept[t][where[i]]
            yield i, values
            # dropped before the next run starts (runs.Runs._runs): held here, a third
            # feed's outputs were alive (+100 MiB on ddddocr's detector)
            del run, values
        if whole_run:  # room for about two plans' worth, within the limit
            store.budget = _kept_budget(store, whole_run, sum(size.values()))
            if tail is None:
                self._parts_ahead(skey, sim, cuts)
        for t in pick_cuts(cuts, start, size, store.budget // STATES_KEPT):
            if t in gathered:  # else a later feed's shapes changed the pick: not kept
                store.put(key(t), gathered[t])

    def plan_outputs(
        self, plan: Plan, indices: Sequence[int] | None = None, *, before_pick: bool = False
    ) -> dict[str, list[np.ndarray]]:
        """Model outputs under ``plan`` on the feeds ``indices`` (default: the evaluation
        feeds), as ``run_outputs`` gives them, but run from the kept values entering the
        first layer whose choice differs from plans run before (the search measures one
        change at a time: on a 102-conv detector a change near the end ran the whole model,
        and a new quantizer structure built a whole-model session; here only the part
        holding the change is built). Call ``forget_kept_values`` when the feeds at these
        indices change. ``before_pick``: as ``run_outputs``'."""
        self._ensure_ref()
        placed = self.placement(plan)
        structure = self._structure_of(plan)
        skey, sim = self._sim_for(*structure)
        feeds = self._plan_feeds(plan, placed)
        whole = lambda: self._session_for(*structure)[1]  # noqa: E731
        out: dict[str, list[np.ndarray]] = {n: [] for n in self._output_names}
        fetched = self._fetched_for(before_pick)
        for _i, values in self._plan_runs(skey, sim, whole, plan, feeds, (), indices):
            for n, t in zip(self._output_names, fetched, strict=True):
                out[n].append(values[t])
        self._start_parts_ahead()
        return out

    def forget_kept_values(self) -> None:
        """Drop the values kept for later runs (their feeds are about to change)."""
        self._prefix_values.clear()

    def _tail_for(self, skey, sim, cuts, key, wanted, todo):
        """Where to start: (start, kept values, session). Everything kept: no run at all
        (start past the end); else the latest cut at or before the first layer to measure
        whose entering values and earlier outputs are kept (its tail session); else the
        whole graph (0, {}, None)."""
        store = self._prefix_values

        def kept_values(names) -> dict[str, tuple[np.ndarray, ...]] | None:
            found: dict[str, tuple[np.ndarray, ...]] = {}
            for t in names:
                got = store.get(key(t)) if t in cuts.position else None
                if got is None:
                    return None
                found[t] = got
            return found

        if not todo:
            every = kept_values(wanted)
            if every is not None:
                return _NOTHING_TO_RUN, every, None
        order = cuts.order
        measured = set(todo)
        first = next((k for k, n in enumerate(order) if n in measured), len(order) - 1)
        for k in range(first, -1, -1):
            name = order[k]
            if name not in cuts.start:
                continue
            s = cuts.start[name]
            need = [*cuts.boundary[name], *(t for t in wanted if cuts.index.get(t, s) < s)]
            kept = kept_values(need)
            # from the first cut (node 0, or the first node after a prologue that depends on
            # no layer: rapidocr's PP-OCRv4, 135 nodes), or from any part that needs no kept
            # value, the rest computes what the whole graph does; run as its own tail, its
            # first evaluation built neither the whole graph's session nor, after it, the
            # chain's parts ahead, and it was a second build of the whole graph beside the
            # one _session_ahead builds on the side thread (160 ms of CPU on
            # rapidocr-onnxruntime 1.4.4's ch_PP-OCRv4_rec_infer.onnx)
            first_cut = s == chain.first_start(cuts)
            if (
                kept is not None
                and (first_cut or not kept)
                and not self._chain_from_start(skey, cuts)
            ):
                break  # the part from the first node is the whole graph: its own session
            if kept is not None:
                return s, kept, self._tail_session(skey, sim, name, cuts)
        return 0, {}, None

    def _chain_from_start(self, skey: tuple, cuts: prefix.Cuts) -> bool:
        """Run a whole graph as the chain of its parts rather than in its own session: when
        that session is not built yet and every part's inputs have run before. A weight
        change that moves the target's quantizers near the first layer is a new structure;
        its whole session cost 20-30 ms to build on a CRNN (a third of a float run), where
        the chain builds only the part holding the change."""
        entry = self._sessions.get(skey)
        if entry is not None and entry[1] is not None:
            return False
        types = self._prefix_values.types
        return all(t in types for b in cuts.boundary.values() for t in b)

    def _parts_ahead(self, skey: tuple, sim: SimGraph, cuts: prefix.Cuts) -> None:
        """After the whole graph of a structure ran in its own session: the sessions of its
        chain's parts, built on the side thread (Runs._aside) while the caller reads the
        results. The first change that makes a new structure (int4 on ort-cpu moves the
        target's quantizers around the layer) runs a chain from its cut on, whose later parts
        are this structure's very parts; built then, they were the costliest re-evaluation
        of the generated CRNN (8 sessions, about a float run of CPU: docs/benchmarks.md,
        "Re-evaluation's worst case"). Once per structure; nothing when the side thread is
        off (Runs.overlap) or a cut's type is unknown. An error there is left for the chain,
        which builds what is missing when it runs and reports it. Started by
        :meth:`_start_parts_ahead` once the caller's results are done, so that it does not
        compete with their last runs."""
        types = self._prefix_values.types
        if skey in self._parts_built or len(chain.part_starts(cuts, chain.first_start(cuts))) < 2:
            return
        if not all(t in types for b in cuts.boundary.values() for t in b):
            return
        self._parts_built.add(skey)
        epoch, device = self._parts_epoch, self.device
        # The job is kept on the engine until it starts and runs after: it holds the engine
        # weakly, or the two would form a cycle and a dropped engine (its sessions, its
        # threads) would wait for the garbage collector (test_recovery's dropped engine).
        engine = weakref.ref(self)
        self._parts_due = partial(
            chain.build_parts_ahead,
            sim.model,
            cuts,
            self._prefix_values.declared(),
            self._part_sessions,
            lambda model: make_session(model, device),
            lambda: (e := engine()) is not None and e._parts_epoch == epoch,
        )

    def _start_parts_ahead(self) -> None:
        """Start what :meth:`_parts_ahead` prepared, if anything."""
        due, self._parts_due = self._parts_due, None
        if due is not None:
            self._aside(due)

    def _tail_session(self, skey: tuple, sim: SimGraph, name: str, cuts: prefix.Cuts):
        tkey = (skey, name)
        if tkey in self._tails:
            self._tails.move_to_end(tkey)
            return self._tails[tkey]
        store = self._prefix_values
        if all(t in store.types for b in cuts.boundary.values() for t in b):
            sess = chain.build_chain(
                sim.model,
                cuts,
                cuts.start[name],
                store.declared(),
                self._part_sessions,
                lambda model: make_session(model, self.device),
                self._pool(),
            )
        else:  # some cut's tensor never ran yet (its type is unknown): one session
            model = prefix.build_tail(
                sim.model, cuts.start[name], cuts.boundary[name], store.declared()
            )
            sess = make_session(model, self.device)
        self._tails[tkey] = sess
        while len(self._tails) > TAIL_SESSIONS:
            self._tails.popitem(last=False)
        return sess


def _kept_budget(store: prefix.PrefixValues, whole_run: bool, whole: int) -> int:
    """The kept values' budget after a run whose cut values add up to ``whole`` bytes: a
    whole run (``whole_run``: from node 0 or the first cut) leaves room for about two
    plans' worth, within the limit."""
    return min(store.limit, STATES_KEPT * whole) if whole_run else store.budget


def spread_cuts(
    cuts: prefix.Cuts, start: int, gathered: Mapping[str, Sequence[np.ndarray]], room: int
) -> list[str]:
    """The gathered cut tensors to keep within ``room`` bytes: all of them when they fit,
    else those of every m-th cut from ``start`` on, the smallest m that fits. Kept in graph
    order under a budget smaller than one run's cut values, the last cuts pushed out the
    first ones: a change early in the model then ran the whole graph again (on a CRNN, a
    first change of an early layer cost a new whole-graph session and run, 2-2.5x a float
    run); spread out, a change starts at the nearest kept cut before it."""
    return pick_cuts(
        cuts, start, {t: sum(v.nbytes for v in vals) for t, vals in gathered.items()}, room
    )


def pick_cuts(cuts: prefix.Cuts, start: int, size: Mapping[str, int], room: int) -> list[str]:
    """:func:`spread_cuts` from the cut tensors' total sizes over the feeds."""
    if sum(size.values()) <= room:
        return list(size)
    later = [n for n in cuts.order if n in cuts.start and cuts.start[n] >= start]
    for m in range(2, len(later) + 1):
        picked = dict.fromkeys(t for n in later[::m] for t in cuts.boundary[n] if t in size)
        if sum(size[t] for t in picked) <= room:
            return list(picked)
    return []
