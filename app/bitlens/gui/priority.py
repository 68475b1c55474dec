"""The engine's threads give way to the window's: a lower scheduling priority (Linux).

While a model opens or a sweep runs, the worker thread (numpy between runs) and ONNX
Runtime's intra-op threads keep every core busy, and the window's thread waited tens of
ms for a CPU before it could handle an event (issue 11: the "CPU wait" part of the
longest event-loop gap that benchmarks/bench_ui_stall.py prints). A worker thread raises
its own nice value before its job runs. ONNX Runtime starts a session's intra-op threads
when the session is created, in the thread that creates it, and a new thread starts with
its creator's nice value: the sessions the jobs create run their threads at the worker's
priority too. The cores are still all used; the window's thread just comes first.

On Linux the nice value is a per-thread attribute that ``setpriority(PRIO_PROCESS, tid)``
sets for one thread, and raising it needs no privilege
(https://man7.org/linux/man-pages/man2/setpriority.2.html, "BUGS";
https://man7.org/linux/man-pages/man7/sched.7.html). Elsewhere a thread id is not a
process id, so nothing is changed there.
"""

from __future__ import annotations

import os
import sys
import threading

WORKER_NICE_STEP = 10  # how much nicer than the window's thread the engine's threads run
_LINUX = sys.platform.startswith("linux") and hasattr(os, "setpriority")


def _nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


_WINDOW_NICE = _nice(0) if _LINUX else 0  # imported by the window, in its thread


def yield_to_window() -> None:
    """Lower the calling (worker) thread's priority below the window's thread, once."""
    if not _LINUX:
        return
    tid = threading.get_native_id()
    target = min(_WINDOW_NICE + WORKER_NICE_STEP, 19)
    try:
        if _nice(tid) < target:  # a pool thread keeps it from its first job on
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError:  # a sandbox that forbids it: the jobs run as before
        pass
