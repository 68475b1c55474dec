"""While the window's runner is busy, Python's switch interval is 1 ms (gui/switch_interval.py):
the window's thread, which takes the interpreter lock at each call Qt makes into Python, asks a
computing job for it after 1 ms instead of 5 (docs/benchmarks.md "uisearch (session 16)"). The
interval found before comes back when the last runner goes idle."""

from __future__ import annotations

import sys

from bitlens.core.results import Progress
from bitlens.gui import switch_interval
from bitlens.gui.runner import EngineRunner, Job
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
