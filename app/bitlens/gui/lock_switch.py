"""The window's thread gets Python's interpreter lock within a millisecond of asking for it.

Every time Qt calls into Python on the window's thread (a slot, a timer, each ``paint``,
``event`` or ``sizeHint`` a widget overrides in Python) that thread must take the lock, and
while a job's thread runs Python it holds the lock until the switch interval has passed since
the window's thread asked (5 ms by default, https://docs.python.org/3/library/sys.html#sys.setswitchinterval;
CPython's ``take_gil`` in Python/ceval_gil.h waits that long, then asks the holder to drop it).
So an event-loop pass that enters Python N times waits up to N x 5 ms however little it does: one
progress report redraws the status panel's labels (a dozen entries), and the export of
rapidocr's PP-OCRv4 recognizer had a 186 ms pass in which the window's thread ran 6 ms and
slept 180 while the watchdog thread, which takes the lock every 10 ms, was never late: no
single long hold, 30-odd waits of 5 ms (docs/benchmarks.md, "uiexport (session 16)"). With a
1 ms interval each such wait is at most about 1 ms; the job's thread is asked to let go only
when another thread waits, so a job alone runs as before.
"""

from __future__ import annotations

import sys

WINDOW_SWITCH_S = 0.001


def prompt_lock_handoff() -> None:
    """Set the interpreter's switch interval to ``WINDOW_SWITCH_S`` unless it is shorter."""
    if sys.getswitchinterval() > WINDOW_SWITCH_S:
        sys.setswitchinterval(WINDOW_SWITCH_S)
