"""Python's switch interval shortened while the window's jobs run.

A thread that wants the interpreter lock waits for the switch interval (5 ms by default,
https://docs.python.org/3/library/sys.html#sys.setswitchinterval) before it asks the holder
to drop it, and the holder drops it at its next bytecode boundary; the lock has no queue, so a
waiter that loses the hand-off to another thread waits a whole interval again
(CPython's Python/ceval_gil.h, "Notes about the implementation"). The window's thread takes
the lock each time Qt calls into Python (a timer, a slot, a paint event of a Python widget),
and while a job computes in Python (the search builds its candidate exports in Python,
protobuf message by message) every one of those entries waited up to an interval: the event
loop's passes during Find Plan on rapidocr's PP-OCRv4 recognizer lasted 101-134 ms on a quiet
machine with the window's thread asleep almost all of it and no single long hold by the job
(docs/benchmarks.md "uisearch (session 16)").

While any runner is busy the interval is ``JOB_SWITCH_S``: a waiter asks for the lock after
1 ms instead of 5. A thread that does not contend pays nothing; the job pays one forced hand-off
per millisecond only while the window's thread (or another Python thread) wants the lock.
The interval found before the first job is put back when the last runner goes idle.
"""

from __future__ import annotations

import sys
import threading

JOB_SWITCH_S = 0.001  # the bench sets it (bench_ui_stall.py --switch-ms) to compare

_lock = threading.Lock()
_busy = 0  # runners busy now
_saved: float | None = None  # the interval found when the first one became busy


def job_started() -> None:
    """A runner became busy: the interval is ``JOB_SWITCH_S`` (never longer than it was)."""
    global _busy, _saved
    with _lock:
        _busy += 1
        if _busy == 1:
            _saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved, JOB_SWITCH_S))


def job_ended() -> None:
    """A runner went idle: the interval found before is back once none is busy."""
    global _busy, _saved
    with _lock:
        if _busy == 0:
            return
        _busy -= 1
        if _busy == 0 and _saved is not None:
            sys.setswitchinterval(_saved)
            _saved = None
