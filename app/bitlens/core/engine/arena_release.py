"""When a re-evaluation gives the shared arena's free regions back (session.release_arena).

Giving them back after every evaluation made the next one map and fault in all of its
buffers again: on a 46-layer CRNN a third of a re-evaluation's CPU time (a whole-graph
re-evaluation 197 -> 153 ms of CPU without it, peak RSS 321 -> 331 MiB over 16 changes).
The arena is given back once the process has grown by more than ``slack`` bytes since the
last time (half a feed's activations by default, Engine._fit_budget), so memory stays
bounded while a run of clicks reuses the buffers of the one before.
"""

from __future__ import annotations

import os
import sys

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


class ArenaReleaser:
    """Gives the arena back when the RSS grew by more than ``slack`` since the last time
    (always where the RSS cannot be read)."""

    def __init__(self, slack: int = 0) -> None:
        self.slack = slack
        self.floor: int | None = None

    def mark(self) -> None:
        """Count growth from the RSS now, without releasing (the footprint of a first run,
        which the runs after it reuse)."""
        self.floor = resident_bytes()

    def maybe_release(self, least: int = 0) -> bool:
        """Release if grown by more than the slack and ``least`` (or unknown); True when it
        released."""
        rss = resident_bytes()
        slack = max(self.slack, least)
        if rss is not None and self.floor is not None and rss <= self.floor + slack:
            return False
        release_arena()
        self.floor = resident_bytes()
        return True
