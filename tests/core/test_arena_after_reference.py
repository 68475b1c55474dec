"""The float reference leaves ONNX Runtime's shared arena to what comes next
(Engine.prepare): the first evaluation's runs reuse its buffers and give them back after
(the side thread does when the local errors ran first, Engine.evaluate), a sweep
and a calibration that samples values give them back first. The numbers are those of an
engine that gave it back at once."""

from __future__ import annotations

import threading

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, arena_release, localerrors, session, structure
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


def test_the_first_evaluation_runs_on_them_and_gives_them_back_after(monkeypatch) -> None:
    """Local errors not run first (conv_net's 3 layers: one-layer sessions, beside the
    plan's runs): the runs reuse the float reference's buffers (faulting new ones in made
    the CRNN's first W8A8 run cost twice a warm one) and the release follows them."""
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
    # ArenaReleaser: its first call after the float reference always gives the arena back
    assert calls[:2] == ["runs", "x"], calls
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


def _local_errors_first(monkeypatch) -> threading.Event:
    """conv_net's local errors in one graph, run first by the main thread while the side
    thread's build of the whole graph's session waits for that graph's session to be built
    (LocalErrors._local_errors_first)."""
    monkeypatch.setattr(localerrors, "BULK_LOCAL_MIN", 2)  # conv_net's 3 layers: one graph
    local_built = threading.Event()
    real_whole, real_local = structure.make_session, localerrors.make_session

    def whole(*args, **kwargs):
        if threading.current_thread().name.startswith("bitlens-side"):
            local_built.wait(timeout=5)  # a slow build: the local errors go first
        return real_whole(*args, **kwargs)

    def local(*args, **kwargs):
        sess = real_local(*args, **kwargs)
        local_built.set()
        return sess

    monkeypatch.setattr(structure, "make_session", whole)
    monkeypatch.setattr(localerrors, "make_session", local)
    return local_built


def _each_calibrated(monkeypatch, local_built: threading.Event):
    """(engine, the releases' threads, set at a release) for an engine that works aside,
    then one in turn (overlap off), each calibrated before it is given: the releases named
    from then on."""
    aside, in_turn = _engines(2)
    in_turn.overlap = False
    calls: list[str] = []
    done = threading.Event()
    monkeypatch.setattr(session, "_release_lock", _NamingLock(calls, done))
    for engine in (aside, in_turn):
        for _ in engine.calibrate("minmax"):
            pass
        calls.clear()
        done.clear()
        local_built.clear()
        yield engine, calls, done


def test_with_the_local_errors_first_the_runs_reuse_them_the_side_thread_gives_them_back(
    monkeypatch,
) -> None:
    """The local errors run first on the main thread (LocalErrors._local_errors_first): the
    float reference's buffers are not given back before the plan's runs, which reuse them
    (PP-OCRv4 rec's first evaluation: 15k fewer page faults, docs/benchmarks.md "openslack,
    session 16"); after the runs the side thread gives them back while the main thread
    goes on. In turn (overlap off: the local errors follow the runs) the main thread gives
    them back after the runs. The same evaluation either way."""
    local_built = _local_errors_first(monkeypatch)
    results = []
    for engine, calls, done in _each_calibrated(monkeypatch, local_built):
        plan = Plan.preset(engine.info, "W8A8")
        real_local, real_runs = engine._bulk_local_errors, engine._plan_runs

        def bulk(*args, real=real_local, calls=calls, **kwargs):
            calls.append("local")
            return real(*args, **kwargs)

        def runs(*args, real=real_runs, calls=calls, **kwargs):
            calls.append("runs")
            yield from real(*args, **kwargs)

        engine._bulk_local_errors, engine._plan_runs = bulk, runs
        results.append(engine.evaluate(plan))
        assert done.wait(timeout=5)  # the side thread's release may follow the evaluation
        if engine.overlap:
            assert calls[:2] == ["local", "runs"], calls
            assert calls[2].startswith("bitlens-side"), calls
        else:  # the local errors follow the runs
            assert calls[:3] == ["runs", "MainThread", "local"], calls
        engine.close()
    assert results[0] == results[1]


def test_while_the_local_errors_run_first_the_side_thread_gave_them_back(monkeypatch) -> None:
    """Session 15's way (arena_release.REUSE_AFTER_REFERENCE off, kept for A/B): the side
    thread, its session built, gives the float reference's buffers back while the local
    errors run first (Engine._arena_ahead), not the main thread between the local errors
    and the plan's runs. The same evaluation as in turn (overlap off: the main thread gives
    them back before the runs)."""
    monkeypatch.setattr(arena_release, "REUSE_AFTER_REFERENCE", False)
    local_built = _local_errors_first(monkeypatch)
    results = []
    for engine, calls, done in _each_calibrated(monkeypatch, local_built):
        plan = Plan.preset(engine.info, "W8A8")
        real = engine._bulk_local_errors

        def bulk(*args, real=real, overlap=engine.overlap, done=done, **kwargs):
            if overlap:  # the side thread gets to it while the local errors run
                done.wait(timeout=2)
            return real(*args, **kwargs)

        engine._bulk_local_errors = bulk
        results.append(engine.evaluate(plan))
        expected = "bitlens-side" if engine.overlap else "MainThread"
        assert calls and calls[0].startswith(expected), calls
    assert results[0] == results[1]
