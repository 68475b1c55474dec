"""When a re-evaluation gives the shared arena's free regions back (session.release_arena).

Giving them back after every evaluation made the next one map and fault in all of its
buffers again: on a 46-layer CRNN a third of a re-evaluation's CPU time (a whole-graph
re-evaluation 197 -> 153 ms of CPU without it, peak RSS 321 -> 331 MiB over 16 changes).
The arena is given back once the process has grown by more than ``slack`` bytes since the
last time (half a feed's activations by default, Engine._fit_budget), so memory stays
bounded while a run of clicks reuses the buffers of the one before.

That alone still gave them back at nearly every re-evaluation that runs most of the graph:
its run's buffers, fetched outputs and local runs grow the process by more than a feed's
activations, so each such re-evaluation released, and the next one faulted its buffers in
again (generated CRNN, changes of the first layer: ~25k page faults each, eval 177-215 ->
129-165 ms of CPU without releasing; docs/benchmarks.md, "Re-evaluation's worst case"). So
work that grows back to about where the last release was made (``reached``: the same
footprint again, within a quarter of the slack) keeps its buffers; only growth beyond it
releases. Measured on that CRNN: with no margin the RSS ratchets up release by release
through the first changes (3 releases in 12 re-evaluations), and the first-layer changes
stayed 3.2-3.9x a float run of CPU against 2.2-2.8x with the quarter; peak RSS 222-224
against 223-225 MiB (219-222 before; one run 232).
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future

from bitlens.core.engine.native_memory import trim_heap
from bitlens.core.engine.session import release_arena


def resident_bytes() -> int | None:
    """The process's resident set size (Linux: /proc/self/statm); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# growth past the last release's RSS that releases again: a quarter of the slack (see above:
# no margin held the peak nearer, for more page faults in the first changes)
REACHED_PART = 4
# Also give the C heap's free memory back at each release (native_memory.trim_heap)
TRIM_HEAP = True


# The first evaluation after the float reference runs on the reference's buffers and gives
# the arena back after its runs, not before them (Engine._arena_ahead); False: the side
# thread gives them back while the local errors run first (session 15, "openeval"), for A/B.
REUSE_AFTER_REFERENCE = True


def _kept() -> Future:
    done: Future = Future()
    done.set_result(False)
    return done


KEPT = _kept()  # Engine._arena_ahead's answer with REUSE_AFTER_REFERENCE: nothing released


class ArenaReleaser:
    """Gives the arena back when the RSS grew by more than ``slack`` since the last time
    (always where the RSS cannot be read)."""

    def __init__(self, slack: int = 0) -> None:
        self.slack = slack
        # the engine may call maybe_release from its side thread (Engine._arena_ahead)
        self._lock = threading.Lock()
        self.floor: int | None = None
        # The RSS the last release was made at: what the work before it had grown to. Work
        # that grows back to it (the same plan's runs, a re-evaluation from the same layer)
        # finds its buffers kept (see maybe_release).
        self.reached: int | None = None

    def mark(self) -> None:
        """Count growth from the RSS now, without releasing (the footprint of a first run,
        which the runs after it reuse)."""
        self.floor = resident_bytes()

    def maybe_release(self, least: int = 0) -> bool:
        """Release if grown by more than the slack and ``least`` (or unknown); True when it
        released."""
        with self._lock:
            return self._maybe_release(least)

    def _maybe_release(self, least: int) -> bool:
        rss = resident_bytes()
        slack = max(self.slack, least)
        if rss is not None and self.floor is not None:
            if rss <= self.floor + slack:
                return False
            if self.reached is not None and rss <= self.reached + slack // REACHED_PART:
                return False
        # A release with no floor (the first, or the one after the float reference) was not
        # made for growth: what it found is not a footprint to keep (a first evaluation gives
        # the arena back before its runs and again before its local errors, as before).
        self.reached = rss if self.floor is not None else None
        release_arena()
        if TRIM_HEAP:
            trim_heap()
        self.floor = resident_bytes()
        return True
