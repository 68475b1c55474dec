"""The job lane: one job at a time, newer jobs supersede older ones, cancel, errors."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from bitlens.core.errors import DataError
from bitlens.core.results import Progress
from bitlens.gui.runner import EngineRunner, Job
from tests.gui.conftest import WAIT_MS


def _steps(n: int, delay: float, log: list[int], gate: threading.Event | None = None):
    """``n`` steps of ``delay`` s; with a ``gate``, held after the first one until it opens
    (the test's cancel reaches the job before it could finish, however loaded the machine)."""
    for i in range(n):
        time.sleep(delay)
        log.append(i)
        yield Progress(i + 1, n, f"step {i}")
        if gate is not None and i == 0:
            gate.wait(60)
    return n


def test_jobs_run_one_at_a_time_and_newer_supersede(qtbot) -> None:
    runner = EngineRunner()
    active, peak, results = [0], [0], []
    lock = threading.Lock()

    def work(x: int) -> int:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return x

    with qtbot.waitSignal(runner.busyChanged, check_params_cb=lambda b: not b, timeout=WAIT_MS):
        for x in range(5):
            runner.submit(Job("eval", "e", work, (x,), on_result=results.append))
        runner.submit(Job("other", "o", work, (100,), on_result=results.append))
    # the first "eval" started at once; 1..3 were replaced while queued; 0's result was
    # dropped because a newer "eval" had been submitted meanwhile
    assert results == [100, 4] or results == [4, 100]
    assert peak[0] == 1


def test_cancel_stops_a_generator_between_yields(qtbot) -> None:
    runner = EngineRunner()
    log: list[int] = []
    done: list[object] = []
    gate = threading.Event()
    with qtbot.waitSignal(runner.progressed, timeout=WAIT_MS):
        runner.submit(Job("sweep", "s", _steps, (100, 0.02, log, gate), on_result=done.append))
    with qtbot.waitSignal(runner.cancelled, timeout=WAIT_MS):
        runner.cancel()
        gate.set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=WAIT_MS)
    assert done == []
    assert 0 < len(log) < 100


def test_a_cancelled_generator_is_closed_before_cancelled_is_reported(qtbot) -> None:
    """Its ``finally`` (an export removing its staging file) runs in the worker before the
    job reports cancelled, not whenever the garbage collector finds the generator."""
    runner = EngineRunner()
    cleaned: list[str] = []
    keep: list[object] = []  # holds the generator: only an explicit close runs its finally
    gate = threading.Event()

    def job():
        try:
            yield from _steps(100, 0.02, [], gate)
        finally:
            cleaned.append(threading.current_thread().name)

    def started():
        gen = job()
        keep.append(gen)
        return (yield from gen)

    with qtbot.waitSignal(runner.progressed, timeout=WAIT_MS):
        runner.submit(Job("export", "x", started, ()))
    with qtbot.waitSignal(runner.cancelled, timeout=WAIT_MS):
        runner.cancel()
        gate.set()
    assert len(cleaned) == 1 and cleaned[0] != threading.main_thread().name


def test_errors_reach_failed_and_the_lane_goes_on(qtbot) -> None:
    runner = EngineRunner()
    results = []

    def bad() -> None:
        raise DataError("no data for input 'x'")

    with qtbot.waitSignal(runner.failed, timeout=WAIT_MS) as blocker:
        runner.submit(Job("a", "Reading data", bad))
        runner.submit(Job("b", "next", lambda: 7, on_result=results.append))
    assert blocker.args[0] == "Reading data"
    assert isinstance(blocker.args[1], DataError)
    qtbot.waitUntil(lambda: results == [7], timeout=WAIT_MS)


def test_shutdown_waits_for_the_running_job(qtbot) -> None:
    runner = EngineRunner()
    log: list[int] = []
    with qtbot.waitSignal(runner.progressed, timeout=WAIT_MS):
        runner.submit(Job("sweep", "s", _steps, (1000, 0.01, log)))
    runner.submit(Job("later", "l", lambda: 1))
    assert runner.shutdown(10_000)
    n = len(log)
    assert n < 1000 and not runner.busy
    time.sleep(0.05)
    assert len(log) == n  # nothing runs after shutdown
    runner.submit(Job("after", "a", lambda: 1))
    assert not runner.busy


def _resumable(n: int, delay: float, done: list[int], order: list[str], gate: threading.Event):
    """Steps that skip what an earlier, stopped run of the same request already did; held
    after the first step until ``gate`` opens."""
    for i in range(len(done), n):
        time.sleep(delay)
        done.append(i)
        order.append(f"aside {i}")
        yield Progress(i + 1, n, f"step {i}")
        gate.wait(60)
    return list(done)


def test_a_job_that_steps_aside_lets_another_run_first_and_starts_again(qtbot) -> None:
    """The layer detail's sandbox (seconds on a big embedding) must not delay an edit's
    evaluation: it stops between two yields and resumes after the other job."""
    runner = EngineRunner()
    done: list[int] = []
    order: list[str] = []
    results: list[object] = []
    gate = threading.Event()

    def evaluate() -> str:
        order.append("evaluate")
        return "evaluated"

    with qtbot.waitSignal(runner.progressed, timeout=WAIT_MS):
        runner.submit(Job("detail", "d", _resumable, (40, 0.02, done, order, gate),
                          on_result=results.append, steps_aside=True))  # fmt: skip
    with qtbot.waitSignal(runner.busyChanged, check_params_cb=lambda b: not b, timeout=WAIT_MS):
        runner.submit(Job("evaluate", "e", evaluate, on_result=results.append))
        gate.set()
    assert results == ["evaluated", list(range(40))]
    first_eval = order.index("evaluate")
    assert 0 < first_eval < 40  # it ran while the sandbox was half done
    assert [o for o in order if o != "evaluate"] == [f"aside {i}" for i in range(40)]  # no redo


def test_an_aside_job_is_not_queued_twice_when_its_key_is_asked_again(qtbot) -> None:
    runner = EngineRunner()
    results: list[object] = []
    with qtbot.waitSignal(runner.progressed, timeout=WAIT_MS):
        runner.submit(Job("detail", "d", _steps, (50, 0.02, []), steps_aside=True,
                          on_result=lambda r: results.append(("old", r))))  # fmt: skip
    with qtbot.waitSignal(runner.busyChanged, check_params_cb=lambda b: not b, timeout=WAIT_MS):
        runner.submit(Job("detail", "d", _steps, (3, 0.0, []), steps_aside=True,
                          on_result=lambda r: results.append(("new", r))))  # fmt: skip
        runner.submit(Job("evaluate", "e", lambda: "evaluated", on_result=results.append))
    assert results.count("evaluated") == 1
    assert [r for r in results if r != "evaluated"] == [("new", 3)]


def test_a_discarded_aside_job_is_not_started_again(qtbot) -> None:
    runner = EngineRunner()
    results: list[object] = []
    with qtbot.waitSignal(runner.progressed, timeout=WAIT_MS):
        runner.submit(Job("detail", "d", _steps, (50, 0.02, []), steps_aside=True,
                          on_result=results.append))  # fmt: skip
    runner.discard("detail")  # the selection went away
    with qtbot.waitSignal(runner.busyChanged, check_params_cb=lambda b: not b, timeout=WAIT_MS):
        runner.submit(Job("evaluate", "e", lambda: "evaluated", on_result=results.append))
    assert results == ["evaluated"]


def _nice(tid: int) -> int:
    import os

    return os.getpriority(os.PRIO_PROCESS, tid)


def _session_threads() -> tuple[int, list[int], object]:
    """In a job: its thread's nice value, and those of the threads an ONNX Runtime session
    (a one-node model built here, two intra-op threads) started."""
    import os

    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    before = set(os.listdir("/proc/self/task"))
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    new = [int(t) for t in set(os.listdir("/proc/self/task")) - before]
    return _nice(threading.get_native_id()), [_nice(t) for t in new], sess


def _stepping_nice():
    yield Progress(0, 1, "one")
    return _nice(threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_jobs_and_the_threads_they_start_run_below_the_window(qtbot) -> None:
    """On 2 cores a job's thread and ONNX Runtime's intra-op thread took both CPUs and the
    window's thread, woken for a paint or a timer, waited for one (bench_ui_stall.py: most
    of each long event-loop gap). Jobs now run WORKER_NICE above the process's nice value,
    and the threads they start inherit it; the window's thread keeps its own."""
    import os

    from bitlens.gui.thread_priority import WORKER_NICE

    base = _nice(os.getpid())
    want = min(base + WORKER_NICE, 19)
    runner, results = EngineRunner(), []
    for func in (_session_threads, _stepping_nice):
        with qtbot.waitSignal(runner.finished, timeout=WAIT_MS):
            runner.submit(Job(func.__name__, "nice", func, on_result=results.append))
    (job_nice, started, _sess), generator_nice = results
    assert job_nice == want and generator_nice == want
    assert started and all(n == want for n in started)  # ORT's pool threads
    assert _nice(threading.get_native_id()) == base  # the test's (the window's) thread
