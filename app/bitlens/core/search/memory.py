"""The search's memory bound: what the process may keep resident between two of its steps.

A search visits many plan structures, layers and exports one after the other, and what one
step used stays resident for the next: ONNX Runtime's shared arena keeps the regions its
largest runs grew it by (session.release_arena), glibc keeps freed heap, and the engine
keeps sessions per structure, per layer and per cut. The engine gives the arena back after
its own evaluations only when they grew it (arena_release.py); the search's exports, local
runs and sessions of other structures grow it too. After every step the search reads the
process's RSS and, above the bound, gives back the arena's free regions and the free heap,
then, still above, drops the engine's sessions and quantized weights (rebuilt on demand with
the same values: nothing the search decides depends on them, so plans are unchanged).

The bound is :func:`search_memory` (``--search-memory``, SearchOptions.memory_limit): by
default ``MODEL_MULTIPLE`` times the model's file size, at least ``SEARCH_MEMORY_MIN``, at
most the process's one memory budget (core/limits.py). It bounds what stays between steps,
not a step's own runs (a whole-plan evaluation fetches every layer output of a feed).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from bitlens.core.engine.arena_release import resident_bytes
from bitlens.core.engine.native_memory import trim_heap
from bitlens.core.engine.session import release_arena
from bitlens.core.limits import memory_budget

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

Y = TypeVar("Y")
R = TypeVar("R")

SEARCH_MEMORY_MIN = 384 << 20
MODEL_MULTIPLE = 24  # the model, its quantized copies, an export in memory, sessions, a run


def search_memory(engine: Engine, limit: int | None = None) -> int:
    """The bound in bytes: ``limit`` when given, else the default (see the module)."""
    if limit is not None:
        return int(limit)
    return min(memory_budget(), max(SEARCH_MEMORY_MIN, MODEL_MULTIPLE * engine.model.nbytes))


@dataclass
class MemoryBound:
    """Checks the RSS after each step (:meth:`check`) and frees what is rebuildable."""

    engine: Engine
    limit: int
    releases: int = 0  # times the arena and heap were given back
    drops: int = 0  # times the engine's sessions went too
    settled: int | None = None  # the RSS after the last release

    def check(self) -> None:
        rss = resident_bytes()
        if rss is None or rss <= self.limit:
            return
        # Above the bound after a release already (what the search holds needs more):
        # release again only when a quarter of the bound more has piled up, not every step
        if self.settled is not None and rss <= self.settled + self.limit // 4:
            return
        self.releases += 1
        release_arena()
        trim_heap()
        rss = resident_bytes() or 0
        if rss > self.limit:
            self.drops += 1
            self.engine.drop_sessions()
            release_arena()
            trim_heap()
            rss = resident_bytes() or 0
        self.settled = rss


def bounded(gen: Generator[Y, None, R], bound: MemoryBound) -> Generator[Y, None, R]:
    """``gen`` with ``bound`` checked before it starts and after each of its steps."""
    try:
        bound.check()  # e.g. the float reference's buffers, kept for a first evaluation
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            bound.check()
            yield item
    finally:
        gen.close()
