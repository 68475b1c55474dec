"""A generator job's burst of progress reports reaches the window as a few
(gui/progress_thinning.py): each report the window handles waits for the interpreter lock
from the job's thread, and the open of PP-OCRv4 rec sent 47 within 1 ms (its calibration's
one per activation), one event-loop pass of 126-144 ms (docs/benchmarks.md "opengil
(session 15)"). Every other value a job yields, each stage's first report and a count's
last one still arrive, and the job's result is the same."""

from __future__ import annotations

from bitlens.core.results import Progress
from bitlens.gui.progress_thinning import thin
from bitlens.gui.runner import EngineRunner, Job
from tests.gui.conftest import WAIT_MS


def _burst(n: int):
    """``n`` reports at once, a plan-like value among them, a new stage, and a result."""
    for i in range(n):
        yield Progress(i + 1, n, f"calibrating t{i}")
        if i == n // 2:
            yield ("point", i)
    yield Progress(0, 1, "wrote the file")
    return "done"


def test_a_burst_of_reports_reaches_the_window_as_a_few(qtbot) -> None:
    runner = EngineRunner()
    seen: list[Progress] = []
    others: list[object] = []
    results: list[object] = []
    runner.progressed.connect(lambda _job, p: seen.append(p))
    with qtbot.waitSignal(runner.busyChanged, check_params_cb=lambda b: not b, timeout=WAIT_MS):
        runner.submit(Job("burst", "b", _burst, (400,), on_result=results.append,
                          on_yield=others.append))  # fmt: skip
    assert results == ["done"] and others == [("point", 200)]
    assert len(seen) < 20  # the old code: all 401
    assert seen[0] == Progress(1, 400, "calibrating t0")  # a stage's first
    assert Progress(400, 400, "calibrating t399") in seen  # a count's last
    assert seen[-1] == Progress(0, 1, "wrote the file")  # a new stage


def test_thinning_passes_what_is_sent_and_closes_the_job() -> None:
    closed: list[bool] = []

    def job():
        try:
            got = yield Progress(0, 2, "a")
            assert got == "reply"
            yield Progress(1, 2, "a")  # within the gap: left out
            yield "value"
            yield Progress(1, 3, "b")
        finally:
            closed.append(True)

    gen = thin(job())
    assert next(gen) == Progress(0, 2, "a")
    assert gen.send("reply") == "value"
    assert next(gen) == Progress(1, 3, "b")
    gen.close()
    assert closed == [True]
