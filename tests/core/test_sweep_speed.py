"""The sweep's faster paths (engine/sweep.py) give the numbers of the straightforward ones:
the caches the sweep drops rebuilt by the next evaluation, and suffix sessions on one ONNX Runtime
thread (sweep.SUFFIX_THREADS: the default on 2 cores, sweep.suffix_threads)."""

from __future__ import annotations

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, sweep
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.builders import conv_net
from tests.core.test_engine_scale import _close, _run_sweep, deep_mlp


def _engine(build, n: int = 6, dims: dict[str, int] | None = None) -> Engine:
    loaded = from_proto(build())
    data = Dataset.random(loaded.info, n=n, seed=5, dims={"N": 3} if dims is None else dims)
    return Engine(loaded, data, device="cpu")


def test_suffix_sessions_on_one_thread_give_the_entries_of_default_sessions(monkeypatch) -> None:
    """sweep.SUFFIX_THREADS = 1 (a setting, not the default). MatMul stacks: the same
    entries. Convolutions: ONNX Runtime may split a convolution's
    sums differently over one thread and over two (measured on ddddocr's common.onnx:
    1e-5 apart in one Conv's output), so equal to float32 rounding, the suffix sweep's
    contract (test_engine_scale.test_suffix_sweep_equals_the_full_model_sweep)."""
    for build, exact in ((lambda: deep_mlp(8), True), (conv_net, False)):
        monkeypatch.setattr(sweep, "SUFFIX_THREADS", 1)
        one = _run_sweep(_engine(build, dims={"N": 3} if exact else {}))
        monkeypatch.setattr(sweep, "SUFFIX_THREADS", 0)  # ONNX Runtime's default
        default = _run_sweep(_engine(build, dims={"N": 3} if exact else {}))
        if exact:
            assert one == default
            continue
        assert one.keys() == default.keys()
        for key in one:
            _close(one[key].output, default[key].output, rel=1e-5)


def test_evaluations_after_a_sweep_equal_those_before() -> None:
    """The sweep drops the kept prefix values and the plan's quantized weights; the next
    evaluations rebuild them and give the same results."""
    engine = _engine(lambda: deep_mlp(6))
    w8a8 = Plan.preset(engine.info, "W8A8")
    changed = w8a8.with_choices({"mm3": LayerChoice.of("int2 sym ch", "uint8 asym")})
    before = [engine.evaluate(w8a8), engine.evaluate(changed)]
    assert engine._wcache and engine._prefix_values.nbytes
    _run_sweep(engine)
    assert not engine._wcache and not engine._prefix_values.nbytes
    engine._acc.clear()  # measure again, from the rebuilt caches
    engine._local.clear()
    assert [engine.evaluate(w8a8), engine.evaluate(changed)] == before


def test_suffix_sessions_share_the_cores_among_the_runs_in_flight(monkeypatch) -> None:
    """sweep.suffix_threads: SWEEP_WORKERS runs in flight share the cores (one thread each
    on 2 cores); SUFFIX_THREADS, when set, wins (0: ONNX Runtime's default)."""
    monkeypatch.setattr(sweep, "SUFFIX_THREADS", None)
    for cores, workers, threads in ((1, 1, 1), (2, 2, 1), (3, 2, 1), (8, 2, 4)):
        monkeypatch.setattr(sweep, "_cores", lambda cores=cores: cores)
        assert (sweep.sweep_workers(), sweep.suffix_threads()) == (workers, threads)
    monkeypatch.setattr(sweep, "SUFFIX_THREADS", 0)
    assert sweep.suffix_threads() == 0


def test_the_sweep_gives_the_arena_back_only_once_the_process_grew(monkeypatch) -> None:
    """Between layers the sweep releases the arena through the engine's ArenaReleaser: not
    while the process stays within its slack of the last release (each release made the
    next layer's runs fault their buffers in again), and again once it grew past it; the
    same entries either way."""
    from bitlens.core.engine import arena_release

    released: list[int] = []
    monkeypatch.setattr(arena_release, "release_arena", lambda: released.append(1))
    # where the sweep called the release itself after every layer (before session 15)
    monkeypatch.setattr(sweep, "release_arena", lambda: released.append(1), raising=False)
    rss = [100 << 20]
    monkeypatch.setattr(arena_release, "resident_bytes", lambda: rss[0])
    engine = _engine(lambda: deep_mlp(6))
    engine.evaluate(Plan.preset(engine.info, "W8A8"))
    engine._arena.slack = 8 << 20
    released.clear()
    steady = _run_sweep(engine)
    assert len(released) <= 1  # at most the sweep's start (Sweep._room_for_sweep)

    class Growing:  # the process grows by 16 MiB a layer: past the slack every time
        def __call__(self) -> int:
            rss[0] += 16 << 20
            return rss[0]

    monkeypatch.setattr(arena_release, "resident_bytes", Growing())
    released.clear()
    grown = _run_sweep(engine)
    assert len(released) >= len(engine.info.layer_names) // 2
    assert grown == steady
