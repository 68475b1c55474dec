"""Long CLI jobs show progress on stderr: a rewritten line on a terminal, a plain line at
most every PERIOD seconds in a log (an export of a large model was ten silent minutes)."""

from __future__ import annotations

import io
from collections.abc import Generator

from bitlens.cli import progress
from bitlens.cli.progress import ProgressLine, follow
from bitlens.core.results import Progress


def _job(n: int) -> Generator[object, None, str]:
    for i in range(n):
        yield Progress(i + 1, n, f"layer {i}")
        yield object()  # a search's evaluated plan: not progress, never printed
    return "done"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_per_period_and_the_value_comes_back(monkeypatch) -> None:
    clock = iter(float(t) for t in range(0, 1000, 4))  # 4 s between items
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    log = io.StringIO()
    assert follow(_job(10), ProgressLine(log, period=10.0)) == "done"
    lines = log.getvalue().splitlines()
    assert lines == ["bitlens: 3/10 layer 2", "bitlens: 6/10 layer 5", "bitlens: 9/10 layer 8"]


def test_a_quick_job_in_a_log_prints_nothing() -> None:
    log = io.StringIO()
    assert follow(_job(3), ProgressLine(log, period=10.0)) == "done"
    assert log.getvalue() == ""


def test_a_terminal_line_is_rewritten_and_ended() -> None:
    tty = _Tty()
    follow(_job(2), ProgressLine(tty))
    text = tty.getvalue()
    assert text.count("\r") == 2 and "2/2 layer 1" in text and text.endswith("\n")
