"""A job's progress reports, at most one per stage every few tens of milliseconds.

Every value a generator job yields crosses to the window's thread as a queued Qt signal, and
each one the window handles (``EngineRunner._on_yielded``, the progress bar's slot) must take
Python's interpreter lock from the job's thread, which holds it for up to the switch interval
(5 ms, https://docs.python.org/3/library/sys.html#sys.setswitchinterval) each time while it
computes. The open of rapidocr's PP-OCRv4 recognizer yields 47 of its 51 reports within
1 ms of each other (the calibration's one per activation): the window handled them in one
event-loop pass, 126-144 ms long, its thread asleep waiting for the lock
(docs/benchmarks.md "opengil (session 15)"). A bar cannot show more than one step per frame
anyway.

A ``Progress`` is passed on when ``MIN_GAP_S`` has passed since the last one passed on, when
it completes its count, or when its message starts a new stage (its first word differs: an
export's "wrote ..." after its "building ..."); any other value a job yields (a search's
plans) is always passed on. A report left out is never needed later: the next one says more.
Cancelling still stops the job at a report passed on, at most ``MIN_GAP_S`` later.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Generator
from typing import Any

from bitlens.core.results import Progress

MIN_GAP_S = 0.030


def thinned(func: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
    """The generator function ``func`` with its ``Progress`` reports thinned out."""

    @functools.wraps(func)
    def gen(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        return (yield from thin(func(*args, **kwargs)))

    return gen


def thin(inner: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    last_at = -float("inf")
    last_stage: str | None = None
    try:
        value = next(inner)
        while True:
            sent = None
            if isinstance(value, Progress):
                now = time.perf_counter()
                stage = value.message.split(" ", 1)[0]
                if now - last_at >= MIN_GAP_S or value.done >= value.total or stage != last_stage:
                    last_at, last_stage = now, stage
                    sent = yield value
            else:
                sent = yield value
            value = inner.send(sent)
    except StopIteration as stop:
        return stop.value
    finally:
        inner.close()  # closed with the job (ClosingGeneratorWorker): the job's finally runs
