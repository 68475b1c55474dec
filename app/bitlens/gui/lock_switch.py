"""The window's thread gets Python's interpreter lock within a millisecond of asking for it.

Every time Qt calls into Python on the window's thread (a slot, a timer, each ``paint``,
``event`` or ``sizeHint`` a widget overrides in Python) that thread must take the lock, and
while a job's thread runs Python it keeps the lock until the switch interval has passed since
the window's thread asked (5 ms by default, https://docs.python.org/3/library/sys.html#sys.setswitchinterval;
CPython 3.11's ``take_gil`` in Python/ceval_gil.h waits that long, then asks the holder to
drop it). So an event-loop pass that enters Python N times can wait N x 5 ms however little it
does: a progress report alone redraws the status panel's labels (about 16 entries). The export
of rapidocr's PP-OCRv4 recognizer had a 186 ms pass in which the window's thread ran 6 ms
and slept 180 while the bench's watchdog thread, which takes the lock every 10 ms, was never
late: no single long hold, many short waits (docs/benchmarks.md, "uiexport (session 16)").
With a 1 ms interval each such wait is about 1 ms. The holder is asked to let go only when
another thread waits, so a job's own threads switch among themselves more often, which cost
nothing measurable (same docs section).

The interval is set while a window is open and put back when the last one closes, so code that
runs without a window (the command line, the core's tests in the same process) keeps
Python's.
"""

from __future__ import annotations

import sys

WINDOW_SWITCH_S = 0.001

_open_windows = 0
_before: float | None = None  # the interval when the first window opened


def window_opened() -> None:
    """A window opens: the interval becomes ``WINDOW_SWITCH_S`` unless it is shorter."""
    global _open_windows, _before
    if _open_windows == 0:
        _before = sys.getswitchinterval()
        if _before > WINDOW_SWITCH_S:
            sys.setswitchinterval(WINDOW_SWITCH_S)
    _open_windows += 1


def window_closed() -> None:
    """A window closed: the last one puts back the interval it found (unless someone has
    changed it since)."""
    global _open_windows
    if _open_windows == 0:
        return
    _open_windows -= 1
    if _open_windows == 0 and _before is not None and sys.getswitchinterval() == WINDOW_SWITCH_S:
        sys.setswitchinterval(_before)
