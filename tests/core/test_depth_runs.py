"""A deep stack of small layers re-evaluated: the next run goes while the caller measures
(running.AHEAD_FETCH_BYTES), small outputs are measured a stack at a time
(metrics.add_stacked), the heap is trimmed with the arena (arena_release.TRIM_HEAP), and
each layer's choice key is computed once per plan (Engine._choice_key). Same numbers as
the straightforward ways (docs/benchmarks.md, "depthrows, session 16")."""

from __future__ import annotations

import dataclasses
import struct
import threading

import numpy as np
import pytest

from bitlens.core import metrics
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, arena_release, measure
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.test_engine_scale import deep_mlp


@pytest.fixture(scope="module")
def stack():
    loaded = from_proto(deep_mlp(10))
    rng = np.random.default_rng(16)
    samples = tuple({"x": rng.standard_normal((4, 16)).astype(np.float32)} for _ in range(7))
    return loaded, Dataset(samples, calibration=(0, 1), evaluation=(2, 3, 4, 5, 6))


def _plans(info) -> list[Plan]:
    w8a8 = Plan.preset(info, "W8A8")
    return [w8a8] + [
        w8a8.with_choices({name: LayerChoice.of(f"int{bits} sym ch", "uint8 asym")})
        for name in ("mm0", "mm4", "mm8")
        for bits in (4, 2)
    ]


def _threads(engine: Engine) -> list[str]:
    """The thread of each run ``engine`` makes from now on."""
    names: list[str] = []
    real = engine._run

    def spy(sess, fetch, feeds):
        names.append(threading.current_thread().name)
        return real(sess, fetch, feeds)

    engine._run = spy  # type: ignore[method-assign]
    return names


def test_a_plans_small_runs_go_ahead_with_the_same_evaluations(stack) -> None:
    """A MatMul stack runs one feed at a time (run_workers 1); a plan's runs with small
    outputs now have the next run in flight on a run thread while the caller measures the
    last one's (all ran on the calling thread before). The float reference's runs stay on
    it (a second one in flight grew the arena for good). Every evaluation equals the one
    of runs in turn, and of the whole graph run each time."""
    loaded, data = stack
    fast = Engine(loaded, data, device="cpu")
    assert fast.run_workers == 1
    threads = _threads(fast)
    list(fast.calibrate())
    assert set(threads) == {"MainThread"}  # the reference's runs
    got = [fast.evaluate(p) for p in _plans(loaded.info)]
    assert any(t.startswith("bitlens-run") for t in threads), set(threads)
    in_turn = Engine(loaded, data, device="cpu")
    in_turn.small_runs_ahead = False
    whole = Engine(loaded, data, device="cpu")
    whole.reuse_prefix = False
    for k, plan in enumerate(_plans(loaded.info)):
        assert got[k] == in_turn.evaluate(plan) == whole.evaluate(plan)


def test_runs_with_large_outputs_stay_one_at_a_time(stack, monkeypatch) -> None:
    from bitlens.core.engine import running

    monkeypatch.setattr(running, "AHEAD_FETCH_BYTES", 0)
    loaded, data = stack
    engine = Engine(loaded, data, device="cpu")
    threads = _threads(engine)
    engine.evaluate(_plans(loaded.info)[0])
    assert set(threads) <= {"MainThread", "bitlens-side_0"}, set(threads)


def _bits(e: metrics.SampleErrors) -> tuple:
    total, rows = e.result()
    pack = lambda xs: tuple(struct.pack("d", x) for x in xs)  # noqa: E731  NaN == NaN here
    return pack(dataclasses.astuple(total)), pack(rows)


def test_stacked_measuring_gives_the_sums_of_one_output_at_a_time(monkeypatch) -> None:
    """Small float32 outputs of several row lengths over three feeds, some of them with a
    NaN, an infinity, float32 overflow (redone in float64), a zero or exact row, a float64
    reference or a reference of another shape (zero-padded), and larger outputs beside
    them: every figure and per-row SQNR equal bit for bit to SampleErrors.add on each,
    with stacks of a few outputs (a small STACK_VALUES) and of all of them."""
    rng = np.random.default_rng(3)
    rows = 6
    shapes = [(rows, 16), (rows, 2, 8), (rows, 16), (rows, 300), (rows, 5000), (rows, 7)] * 3
    feeds = []
    for _ in range(3):
        pairs = []
        for k, shape in enumerate(shapes):
            scale = np.float32((1.0, 1e-3, 1e21)[k % 3])
            r = (rng.standard_normal(shape) * scale).astype(np.float32)
            g = (r + np.float32(0.01) * scale * rng.standard_normal(shape)).astype(np.float32)
            if k == 1:
                r.flat[3] = np.nan
            elif k == 4:
                g.flat[0] = np.inf
            elif k == 7:
                r[2] = 0
            elif k == 8:
                g = r.copy()
            elif k == 9:
                r = r.astype(np.float64)
            elif k == 12:
                r = r[:, :10]  # a shorter reference: zero-padded, measured alone
            pairs.append((r, g))
        feeds.append(pairs)
    for flag, stack_values in ((False, None), (True, 40), (True, metrics.STACK_VALUES)):
        monkeypatch.setattr(measure, "STACKED", flag)
        if stack_values is not None:
            monkeypatch.setattr(metrics, "STACK_VALUES", stack_values)
        errors = [metrics.SampleErrors() for _ in shapes]
        with np.errstate(all="ignore"):
            for pairs in feeds:
                pending = zip(errors, pairs, strict=True)
                measure.measure([(e, (lambda r=r: r), g) for e, (r, g) in pending], rows)
        if not flag:
            one_by_one = [_bits(e) for e in errors]
        else:
            assert [_bits(e) for e in errors] == one_by_one
    assert metrics.stackable(feeds[0][0][1], rows) and not metrics.stackable(feeds[0][4][1], rows)


def test_stacked_measuring_is_what_the_engine_uses(stack, monkeypatch) -> None:
    loaded, data = stack
    used: list[int] = []
    real = metrics.add_stacked
    monkeypatch.setattr(
        metrics, "add_stacked", lambda items, rows: (used.append(len(items)), real(items, rows))
    )
    got = Engine(loaded, data, device="cpu").evaluate(_plans(loaded.info)[0])
    assert used and max(used) > 1
    monkeypatch.setattr(measure, "STACKED", False)
    used.clear()
    assert Engine(loaded, data, device="cpu").evaluate(_plans(loaded.info)[0]) == got
    assert not used


def test_the_heap_is_trimmed_when_the_arena_is_given_back(monkeypatch) -> None:
    """A release also gives the C heap's free memory back: the runs' small outputs (32 KiB
    each on a 256-wide stack) come from the heap, whose freed holes stayed in the RSS (41
    MiB after 16 re-evaluations of a 200-layer stack); no trim when nothing is released."""
    rss = [100]
    done: list[str] = []
    monkeypatch.setattr(arena_release, "resident_bytes", lambda: rss[0])
    monkeypatch.setattr(arena_release, "release_arena", lambda: done.append("arena"))
    monkeypatch.setattr(arena_release, "trim_heap", lambda: done.append("heap"))
    r = arena_release.ArenaReleaser(slack=10)
    assert r.maybe_release()
    assert done == ["arena", "heap"]
    assert not r.maybe_release()  # within the slack
    assert done == ["arena", "heap"]


def test_choice_keys_follow_the_plan(stack) -> None:
    """The choice keys kept for the last plan are not those of another plan, even one that
    differs at a single layer: each equals the key computed afresh."""
    loaded, data = stack
    engine = Engine(loaded, data, device="cpu")
    for plan in _plans(loaded.info) + _plans(loaded.info)[::-1]:
        for name in loaded.info.layer_names:
            assert engine._choice_key(plan, name) == engine._choice_key_of(plan, name)
    a, b = _plans(loaded.info)[:2]
    assert engine._choice_key(a, "mm0") != engine._choice_key(b, "mm0")


def test_local_graphs_declare_their_inputs_dims_with_the_same_errors(monkeypatch) -> None:
    """The local graphs' captured inputs are declared with the dims shape inference gives
    them (the batch's name, the width where every feed has it), not of unknown dims: ONNX
    Runtime built a 200-layer stack's bulk local session in 86 ms of CPU instead of 280.
    Feeds of several row counts (the batch stays a name) give the local errors of
    undeclared dims, and so does a later plan's one-layer local session."""
    from bitlens.core.engine import localerrors, rewrite

    loaded = from_proto(deep_mlp(10))
    rng = np.random.default_rng(5)
    rows = (4, 3, 4, 2, 5)
    samples = tuple({"x": rng.standard_normal((n, 16)).astype(np.float32)} for n in rows)
    data = Dataset(samples, calibration=(0, 1), evaluation=(2, 3, 4))
    built: list = []
    real = rewrite.build_local
    monkeypatch.setattr(
        rewrite, "build_local", lambda *a, **k: built.append(real(*a, **k)) or built[-1]
    )
    plans = _plans(loaded.info)
    engine = Engine(loaded, data, device="cpu")
    got = [engine.evaluate(p) for p in plans]
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for proto in built
        for i in proto.graph.input
    }
    assert dims["r2"] == ["N", 16], dims  # a layer's float input, captured
    monkeypatch.setattr(localerrors, "LOCAL_DIMS", False)
    built.clear()
    plain = Engine(loaded, data, device="cpu")
    assert [plain.evaluate(p) for p in plans] == got
    assert all(
        not any(d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim)
        for proto in built
        for i in proto.graph.input
        if i.name == "r2"
    )
