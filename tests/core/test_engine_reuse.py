"""Re-evaluation from kept quantized values at layer cuts (engine/prefix.py, reuse.py) gives
exactly what running the whole simulation graph gives."""

from __future__ import annotations

import gc
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, chain, prefix, reuse, running
from bitlens.core.engine.session import make_session
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.engine_models import small_cnn
from tests.core.test_engine_scale import deep_mlp, residual_two_outputs
from tests.core.test_targets import silu_net


def _plans(info) -> list[Plan]:
    """W8A8, then one layer changed at a time (weights, activations, both, back), two at
    once, another target, the same plan again, and a float plan."""
    base = Plan.preset(info, "W8A8")
    names = [la.name for la in info.layers]
    plans = [base]
    for name in names:
        plans.append(base.with_choices({name: LayerChoice.of("int4 sym ch", "uint8 asym")}))
        plans.append(base.with_choices({name: LayerChoice.of("int2 sym ch", "int8 sym")}))
    plans.append(base)
    plans.append(base.with_choices({names[-1]: LayerChoice.of("int2 sym ch")}))
    if len(names) > 2:
        plans.append(
            base.with_choices(
                {names[1]: LayerChoice.of("int4 sym ch"), names[-2]: LayerChoice.of("bin ch")}
            )
        )
    plans.append(base.with_target("none"))
    plans.append(base.with_target("none").with_choices({names[-1]: LayerChoice.of("int4 sym ch")}))
    plans.append(Plan.preset(info, "W4A8"))
    plans.append(Plan.preset(info, "W4A8"))
    plans.append(Plan(info))
    return plans


def _data(info, n: int, dims: dict) -> Dataset:
    return Dataset.random(info, n=n, seed=5, dims=dims)


@pytest.mark.parametrize(
    ("build", "dims"),
    [
        (small_cnn, {}),
        (residual_two_outputs, {"N": 3}),
        (lambda: deep_mlp(8), {"N": 4}),
        (silu_net, {}),
    ],
    ids=["cnn", "residual_shared_weight", "mlp", "target_quantizers"],
)
def test_reevaluation_from_kept_values_equals_the_whole_graph(build, dims, monkeypatch) -> None:
    loaded = from_proto(build())
    data = _data(loaded.info, 6, dims)
    plans = _plans(loaded.info)
    tails = []
    real = prefix.build_tail
    monkeypatch.setattr(prefix, "build_tail", lambda *a, **k: tails.append(a[1]) or real(*a, **k))
    fast = Engine(loaded, data, device="cpu")
    got = [fast.evaluate(p) for p in plans]
    slow = Engine(loaded, data, device="cpu")
    slow.reuse_prefix = False
    want = [slow.evaluate(p) for p in plans]
    assert got == want
    assert tails, "no re-evaluation ran a suffix"
    # and against engines that saw only that plan (nothing kept from earlier plans)
    for p, g in list(zip(plans, got, strict=True))[:: max(1, len(plans) // 4)]:
        alone = Engine(loaded, data, device="cpu")
        alone.reuse_prefix = False
        assert alone.evaluate(p) == g


def test_cuts_leave_out_layers_whose_weight_is_read_before_them() -> None:
    """Ws is read by mm_s1 and mm_s2: no cut after mm_s1 may start a suffix (mm_s1 would
    keep its old weights), and every crossing tensor is an output of the whole graph."""
    loaded = from_proto(residual_two_outputs())
    engine = Engine(loaded, _data(loaded.info, 4, {"N": 2}), device="cpu")
    sim, _ = engine._session_for({})
    cuts = engine._cuts[engine._structure({})]
    assert cuts is not None
    assert {"mm_a", "mm_b", "mm_s1"} <= set(cuts.start)
    assert not {"mm_c", "mm_s2"} & set(cuts.start)
    outputs = {v.name for v in sim.model.graph.output}
    assert set(cuts.tensors) <= outputs
    assert cuts.boundary["mm_b"] == ("r",)


def test_kept_values_stay_within_their_budget() -> None:
    store = prefix.PrefixValues(100)
    a = np.zeros(10, np.float32)  # 40 bytes
    store.put(("k", 1), [a])
    store.put(("k", 2), [a])
    assert store.get(("k", 1)) is not None  # now the most recent
    store.put(("k", 3), [a])
    assert store.nbytes == 80 and store.get(("k", 2)) is None
    store.put(("big",), [np.zeros(100, np.float32)])  # larger than the budget: not kept
    assert store.get(("big",)) is None and store.nbytes == 80


def test_a_weight_shared_with_a_later_layer_changes_the_earlier_layers_errors() -> None:
    """mm_s1 and mm_s2 read the same Ws; the weight fed is the one mm_s2 (last in the plan)
    quantizes. Changing only mm_s2 therefore changes mm_s1's results too: the cached
    errors of mm_s1 from the plan before must not be reused (they were, before)."""
    loaded = from_proto(residual_two_outputs())
    data = _data(loaded.info, 6, {"N": 3})
    base = Plan.preset(loaded.info, "W8A8")
    changed = base.with_choices({"mm_s2": LayerChoice.of("int2 sym ch")})
    engine = Engine(loaded, data, device="cpu")
    engine.evaluate(base)
    after = engine.evaluate(changed)
    fresh = Engine(loaded, data, device="cpu").evaluate(changed)
    assert after.layers["mm_s1"] == fresh.layers["mm_s1"]
    assert after == fresh


def test_values_spread_over_cuts_under_a_small_budget_give_the_same_numbers() -> None:
    """When one run's cut values exceed the room for them, every m-th cut's values are kept
    (reuse.spread_cuts) and a base plan's values outlive one-off variants (PrefixValues):
    a change in the middle after two changes of the first layer then starts from a kept cut
    near it instead of running the whole graph (it did before), with the same numbers."""
    loaded = from_proto(deep_mlp(12))
    data = _data(loaded.info, 6, {"N": 4})
    names = [la.name for la in loaded.info.layers]
    base = Plan.preset(loaded.info, "W8A8")
    plans = [base]
    for name in (names[0], names[6], names[9]):
        plans.append(base.with_choices({name: LayerChoice.of("int4 sym ch", "uint8 asym")}))
        plans.append(base.with_choices({name: LayerChoice.of("int2 sym ch", "uint8 asym")}))
    plans.append(plans[-1].with_choices({names[10]: LayerChoice.of("int4 sym ch")}))
    probe = Engine(loaded, data, device="cpu")
    probe.evaluate(base)
    whole = probe._prefix_values.nbytes  # every cut value of one whole run
    fast = Engine(loaded, data, device="cpu")
    fast._prefix_values.limit = whole // 2  # room per run: a quarter of them
    starts: list[int] = []
    real = fast._tail_for
    fast._tail_for = lambda *a: (lambda r: starts.append(r[0]) or r)(real(*a))
    got = [fast.evaluate(p) for p in plans]
    assert fast._prefix_values.nbytes <= whole // 2
    slow = Engine(loaded, data, device="cpu")
    slow.reuse_prefix = False
    assert got == [slow.evaluate(p) for p in plans]
    # base and the two first-layer variants run whole; the later changes start at a kept cut
    assert starts[:3] == [0, 0, 0]
    assert all(s > 0 for s in starts[3:7]), starts


def test_spread_cuts_keeps_every_mth_cut_within_the_room() -> None:
    cuts = prefix.Cuts(
        order=("a", "b", "c", "d"),
        positions=(0, 1, 2, 3),
        start={"a": 0, "b": 2, "c": 4, "d": 6},
        boundary={"a": (), "b": ("t1",), "c": ("t2",), "d": ("t3",)},
        position={"t1": 1, "t2": 3, "t3": 5},
        index={"t1": 1, "t2": 3, "t3": 5},
    )
    v = [np.zeros(10, np.float32)]  # 40 bytes each
    gathered = {"t1": v, "t2": v, "t3": v}
    assert reuse.spread_cuts(cuts, 0, gathered, 120) == ["t1", "t2", "t3"]
    assert reuse.spread_cuts(cuts, 0, gathered, 80) == ["t2"]  # cuts a and c
    assert reuse.spread_cuts(cuts, 2, gathered, 80) == ["t1", "t3"]  # b and d
    assert reuse.spread_cuts(cuts, 0, gathered, 10) == []


def test_unread_values_go_newest_first() -> None:
    store = prefix.PrefixValues(120)
    a = np.zeros(10, np.float32)  # 40 bytes
    for k in (1, 2, 3):
        store.put(("base", k), [a])
    store.put(("variant", 1), [a])  # over the budget: the newest unread other value goes
    assert ("base", 1) in store and ("base", 2) in store and ("base", 3) not in store
    assert store.get(("base", 1)) is not None  # read: kept past unread ones
    store.put(("variant", 2), [a])
    assert ("variant", 1) not in store and ("base", 1) in store and ("base", 2) in store


def test_suffix_parts_are_shared_between_structures_with_the_same_numbers() -> None:
    """A change that moves the target's quantizers (int4 weights on ort-cpu) makes a new
    simulation graph; its suffix runs as a chain of parts (chain.py) whose sessions are
    shared with other structures wherever a part's graph is the same: only the parts
    holding a change get a new session, and the numbers stay those of the whole graph."""
    loaded = from_proto(deep_mlp(16))
    data = _data(loaded.info, 6, {"N": 4})
    names = [la.name for la in loaded.info.layers]
    base = Plan.preset(loaded.info, "W8A8")
    plans = [base]
    for name in (names[4], names[8], names[12], names[2]):
        plans.append(base.with_choices({name: LayerChoice.of("int4 sym ch", "uint8 asym")}))
        plans.append(base.with_choices({name: LayerChoice.of("int2 sym ch", "uint8 asym")}))
    fast = Engine(loaded, data, device="cpu")
    got = [fast.evaluate(p) for p in plans]
    slow = Engine(loaded, data, device="cpu")
    slow.reuse_prefix = False
    assert got == [slow.evaluate(p) for p in plans]
    chains = [c for c in fast._tails.values() if isinstance(c, chain.Chain)]
    assert len(chains) >= 4 and all(len(c.parts) > 1 for c in chains[:2])
    used = {id(sess) for c in chains for sess, _, _ in c.parts}
    assert len(used) < sum(len(c.parts) for c in chains)  # some parts shared
    kept = {id(sess) for sess in fast._part_sessions.values()}
    assert used <= kept
    # besides them only W8A8's parts, built ahead after its whole run (reuse._parts_ahead)
    w8a8_cuts = fast._cuts[fast._sim_for(*fast._structure_of(base))[0]]
    assert len(kept - used) < len(chain.part_starts(w8a8_cuts, 0))


def test_chain_runs_its_parts_as_one_graph() -> None:
    """Chain.run on a graph cut in two gives what the session of the whole graph gives."""
    loaded = from_proto(deep_mlp(4))
    data = _data(loaded.info, 2, {"N": 3})
    engine = Engine(loaded, data, device="cpu")
    plan = Plan.preset(loaded.info, "W8A8")
    engine.evaluate(plan)  # runs the whole graph once: every cut tensor's type is known
    sim, feeds = engine.simulation(plan)
    key, _ = engine._sim_for(*engine._structure_of(plan))
    cuts = engine._cuts[key]
    whole = make_session(sim.model)
    fetch = [o.name for o in whole.get_outputs()]
    feed = {**data.samples[0], **feeds}
    want = whole.run(fetch, {i.name: feed[i.name] for i in whole.get_inputs()})
    # the parts built one after another, and on two threads (as the engine builds them)
    for pool in (None, ThreadPoolExecutor(2)):
        parts: OrderedDict = OrderedDict()
        built = chain.build_chain(
            sim.model, cuts, 0, engine._prefix_values.declared(), parts, make_session, pool
        )
        assert len(built.parts) == len(set(cuts.start.values())) == 4 == len(parts)
        got = built.run(fetch, {a.name: feed[a.name] for a in built.get_inputs()})
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(w, g)
        if pool is not None:
            pool.shutdown()


def test_kept_quantizer_parameters_equal_fresh_ones() -> None:
    """Ranges._params keeps parameter feeds per (kind, prefix, format, range): after many
    plans they still equal freshly computed ones (nothing downstream writes into them)."""
    loaded = from_proto(small_cnn())
    data = _data(loaded.info, 4, {})
    engine = Engine(loaded, data, device="cpu")
    plans = _plans(loaded.info)
    for p in plans:
        engine.evaluate(p)
    for p in plans[:3]:
        placed = engine.placement(p)
        kept = engine._param_feeds(p.choices, placed)
        engine._param_cache.clear()
        fresh = engine._param_feeds(p.choices, placed)
        assert kept.keys() == fresh.keys()
        for k in kept:
            np.testing.assert_array_equal(kept[k], fresh[k])


def test_a_whole_run_holds_only_the_cut_values_it_keeps_across_feeds() -> None:
    """The first evaluation keeps some cut values for later plans; the others are dropped
    feed by feed, not held until the last feed ran (all of them were: on ddddocr's
    detector 407 MiB held to keep 16), and the numbers are those of the whole graph."""
    loaded = from_proto(deep_mlp(12))
    feeds = tuple(Dataset.random(loaded.info, 1, {"N": 4}, seed).samples[0] for seed in range(8))
    data = Dataset(feeds, calibration=(0, 1, 2, 3), evaluation=(4, 5, 6, 7))
    base = Plan.preset(loaded.info, "W8A8")
    probe = Engine(loaded, data, device="cpu")
    probe.evaluate(base)
    whole = probe._prefix_values.nbytes  # every cut value of one whole run, all feeds
    per_feed = whole // len(data.evaluation)
    engine = Engine(loaded, data, device="cpu")
    engine._prefix_values.limit = whole // 2  # room for a quarter of them
    engine.run_workers = running.RUN_WORKERS
    list(engine.calibrate())
    alive: list[int] = []
    real = engine._runs

    def spy(sess, fetch, feeds_of, indices, **kwargs):
        refs: list[weakref.ref] = []
        for k, (i, out) in enumerate(real(sess, fetch, feeds_of, indices, **kwargs)):
            if k == 0:
                refs = [weakref.ref(v) for v in out]
            elif k == len(indices) - 1:
                gc.collect()
                alive.append(sum(v.nbytes for r in refs if (v := r()) is not None))
            yield i, out

    engine._runs = spy
    got = engine.evaluate(base)
    slow = Engine(loaded, data, device="cpu")
    slow.reuse_prefix = False
    assert got == slow.evaluate(base)
    assert 0 < engine._prefix_values.nbytes <= whole // 4
    # the first feed's values still held when the last feed ran: its share of what is kept
    assert alive[0] <= per_feed // 4, (alive, per_feed)


def test_a_feeds_values_are_dropped_before_the_run_after_next_starts() -> None:
    """At most two feeds' outputs are alive at once (Runs._runs): the one being measured
    and the run in flight. _plan_runs (and the local errors, one tensor) held each feed's
    values until the next arrived, so a third feed's were alive while a run went (+100 MiB
    on ddddocr's detector)."""
    loaded = from_proto(deep_mlp(12))
    feeds = tuple(Dataset.random(loaded.info, 1, {"N": 4}, seed).samples[0] for seed in range(8))
    data = Dataset(feeds, calibration=(0, 1, 2, 3), evaluation=(4, 5, 6, 7))
    engine = Engine(loaded, data, device="cpu")
    engine._prefix_values.limit = 0  # no cut value kept: none stays alive on purpose
    engine.run_workers = running.RUN_WORKERS  # two runs in flight (one for a MatMul stack)
    list(engine.calibrate())
    done: list[tuple[list[str], list[weakref.ref]]] = []
    alive: list[int] = []
    real = engine._run
    outputs = set(engine._output_names)  # kept for the output errors

    def spy(sess, fetch, feeds):
        if len(done) >= 2 and done[-2][0] == list(fetch):  # plan runs, then local runs
            gc.collect()
            old = [r() for t, r in zip(*done[-2], strict=True) if t not in outputs]
            alive.append(sum(v is not None for v in old))
        out = real(sess, fetch, feeds)
        done.append((list(fetch), [weakref.ref(v) for v in out]))
        return out

    engine._run = spy
    got = engine.evaluate(Plan.preset(loaded.info, "W8A8"))
    assert len(alive) >= 2 and not any(alive), alive  # from the third feed's run on
    slow = Engine(loaded, data, device="cpu")
    slow.reuse_prefix = False
    assert got == slow.evaluate(Plan.preset(loaded.info, "W8A8"))


def test_two_runs_in_flight_only_for_models_with_a_sequential_part() -> None:
    """A second run in flight holds a second feed's activations; it saves time only where
    one run leaves a core idle (an LSTM over time), not where ORT spreads each node over
    the cores (running.run_workers)."""
    assert Engine(from_proto(deep_mlp(4)), None).run_workers == 1
    assert running.run_workers(["Conv", "LSTM", "Gemm"]) == running.RUN_WORKERS
    assert running.run_workers(["Conv", "Loop"]) == running.RUN_WORKERS
    assert running.run_workers(["Conv", "Relu", "MatMul"]) == 1
