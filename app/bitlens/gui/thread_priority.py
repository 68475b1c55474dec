"""Engine work below the window's thread in the scheduler's eyes (Linux).

On a 2-core machine a job's Python thread and ONNX Runtime's intra-op thread fill both
cores, and the window's thread, woken by a 5 ms timer or a paint, waited for one of them:
``benchmarks/bench_ui_stall.py`` splits each event-loop gap into the window's own CPU time,
its time runnable but waiting for a CPU, and its sleep, and the wait was most of the long
gaps (issue 11). A worker thread raises its own nice value by ``WORKER_NICE`` over the
process's when a job starts on it; the threads it then creates (the engine's thread pools,
ONNX Runtime's intra-op threads, made when a session is built) inherit it (Linux keeps a
nice value per thread and ``clone`` copies it: https://man7.org/linux/man-pages/man2/setpriority.2.html,
"BUGS"/"NOTES": the value is a per-thread attribute). An idle window costs the engine
nothing: the value only matters while threads compete for a CPU.

Raising a nice value needs no privilege; lowering it back would, so a thread is raised once
and stays raised (Qt's pool threads only ever run jobs). Elsewhere than Linux nothing
changes: ``setpriority`` there applies to the whole process.
"""

from __future__ import annotations

import inspect
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

WORKER_NICE = 5  # CFS weight 335 against the window's 1024 at the same base (sched/core.c)
ENABLED = sys.platform.startswith("linux")  # the bench turns it off to compare


def lower_this_thread() -> None:
    """Give the calling (worker) thread the process's nice value plus ``WORKER_NICE``."""
    if not ENABLED:
        return
    tid = threading.get_native_id()
    try:
        target = min(os.getpriority(os.PRIO_PROCESS, os.getpid()) + WORKER_NICE, 19)
        if os.getpriority(os.PRIO_PROCESS, tid) < target:
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError:  # a sandbox without the call: the job runs at the window's priority
        return


def lowered(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a function or a generator function, kept one) run below the window's thread's
    priority: what the runner and other workers hand to their threads."""
    if inspect.isgeneratorfunction(func):

        def gen(*args: Any, **kwargs: Any) -> Any:
            lower_this_thread()
            return (yield from func(*args, **kwargs))

        return gen

    def call(*args: Any, **kwargs: Any) -> Any:
        lower_this_thread()
        return func(*args, **kwargs)

    return call
