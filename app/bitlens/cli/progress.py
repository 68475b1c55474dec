"""Progress of a long command on stderr, so a ten-minute export is never silent.

On a terminal one line is rewritten in place; when stderr is a file or a pipe (CI
logs, ``2> log``) a plain line is written at most every ``PERIOD`` seconds, so a log
shows where a slow job was without filling up. Standard output stays the result alone
(tables or ``--json``), whatever is printed here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Generator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

PERIOD = 10.0  # seconds between lines when stderr is not a terminal


class ProgressLine:
    """Writes :class:`~bitlens.core.results.Progress` items (anything with ``done``,
    ``total`` and ``message``) to a stream; ``close`` ends a rewritten line."""

    def __init__(self, stream: TextIO | None = None, period: float = PERIOD) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.period = period
        self.last = time.monotonic()
        self.open = False

    def show(self, item: Any) -> None:
        if not hasattr(item, "done"):  # a search also yields the plans it evaluated
            return
        text = f"{item.done}/{item.total} {item.message}"
        if self.tty:
            print(f"\r{text[:78]:<78}", end="", file=self.stream, flush=True)
            self.open = True
            return
        now = time.monotonic()
        if now - self.last >= self.period:
            print(f"bitlens: {text}", file=self.stream, flush=True)
            self.last = now

    def close(self) -> None:
        if self.open:
            print(file=self.stream, flush=True)
            self.open = False


def follow(gen: Generator[Any, Any, T], line: ProgressLine | None = None) -> T:
    """Run a progress-yielding job to its end, showing its progress; returns its value."""
    line = line if line is not None else ProgressLine()
    try:
        while True:
            line.show(next(gen))
    except StopIteration as stop:
        return stop.value
    finally:
        line.close()
