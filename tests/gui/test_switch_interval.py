"""While the window's runner is busy, Python's switch interval is 1 ms (gui/switch_interval.py):
the window's thread, which takes the interpreter lock at each call Qt makes into Python, asks a
computing job for it after 1 ms instead of 5 (docs/benchmarks.md "uisearch (session 16)"). The
interval found before comes back when the last runner goes idle."""

from __future__ import annotations

import sys

from bitlens.core.results import Progress
from bitlens.core.search import Budget, SearchOptions, SearchResult, search
from bitlens.gui import jobs, switch_interval
from bitlens.gui.runner import EngineRunner, Job
from tests.core.test_search_passes import _labelled_engine
from tests.gui.conftest import WAIT_MS


def test_jobs_run_with_the_short_interval_and_the_old_one_comes_back(qtbot) -> None:
    runner = EngineRunner()
    before = sys.getswitchinterval()
    seen: list[float] = []

    def plain() -> int:
        seen.append(sys.getswitchinterval())
        return 1

    def stepping():
        seen.append(sys.getswitchinterval())
        yield Progress(1, 1, "one")
        return 2

    with qtbot.waitSignal(runner.busyChanged, check_params_cb=lambda b: not b, timeout=WAIT_MS):
        runner.submit(Job("a", "a", plain))
        runner.submit(Job("b", "b", stepping))
    job = min(before, switch_interval.JOB_SWITCH_S)
    assert seen == [job, job]  # the old code: Python's 0.005 in both
    assert job < 0.005
    assert sys.getswitchinterval() == before


def test_the_interval_comes_back_when_the_last_busy_runner_goes_idle() -> None:
    before = sys.getswitchinterval()
    switch_interval.job_started()  # one runner busy
    switch_interval.job_started()  # a second one
    switch_interval.job_ended()
    assert sys.getswitchinterval() == min(before, switch_interval.JOB_SWITCH_S)
    switch_interval.job_ended()
    assert sys.getswitchinterval() == before
    switch_interval.job_ended()  # an idle runner going idle again changes nothing
    assert sys.getswitchinterval() == before


def test_the_search_run_by_the_runner_finds_the_same_plans(qtbot) -> None:
    """The window's search (its job: the 1 ms interval, the heap frozen) against the same
    search called directly, same seed and budget: the same plans tried, the same front."""
    engine = _labelled_engine()
    opts = SearchOptions(
        Budget(size_ratio=0.9), front_probes=2, refine_evaluations=2, references=(),
        speed_check=False, float_activation_fallback=None, deployed_check=False,
    )  # fmt: skip
    runner = EngineRunner()
    results: list[SearchResult] = []
    with qtbot.waitSignal(runner.busyChanged, check_params_cb=lambda b: not b, timeout=WAIT_MS):
        runner.submit(Job("search", "s", jobs.find_plan, (engine, opts), on_result=results.append))
    gen = search(engine, opts)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        direct: SearchResult = stop.value
    (windowed,) = results
    assert [(p.plan, p.error, p.file_bytes) for p in windowed.tried] == [
        (p.plan, p.error, p.file_bytes) for p in direct.tried
    ]
    assert windowed.front == direct.front and windowed.best == direct.best
