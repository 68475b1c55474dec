"""Measuring a run's layer outputs against the float reference on two threads.

After the last run of an evaluation nothing else runs: ONNX Runtime's threads sleep while
this thread compares every downstream layer's output with its float reference (on a
46-layer CRNN re-evaluated from its first layer, 36 MiB of values: about half a float run
on a quiet 2-core machine, with one core idle). The comparisons are independent per layer,
and numpy leaves the interpreter lock in their array loops and dot products, so the layers
are split over this thread and one of the engine's run threads. Each layer's sums are
computed exactly as on one thread (one layer, one thread, feeds in order): the same
numbers, bit for bit (tested).

The engine no longer asks for it by default (Engine.measure_threads): near-quiet, the two
threads hand the interpreter lock back and forth around every numpy call of every block
and took longer than one thread, for nearly twice its CPU (docs/benchmarks.md,
"reevalwhole, session 14").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor

import numpy as np

from bitlens.core import metrics
from bitlens.core.metrics import SampleErrors

# False: every output measured alone (SampleErrors.add), the straightforward way, for tests
STACKED = True
# Below this many values in all, one thread: handing work over costs more than it saves.
PARALLEL_MIN_VALUES = 1 << 18

# (the layer's sums, its float reference read when measured, its output): a reference
# value read ahead and held until every layer is measured keeps its mapped pages in memory
# (the spilled ones are memory maps): +30 MiB of peak RSS on a CRNN
Pair = tuple[SampleErrors, Callable[[], np.ndarray], np.ndarray]


def measure(pairs: Sequence[Pair], rows: int, pool: Executor | None = None) -> None:
    """``errors.add(reference(), output, rows)`` for each pair; with ``pool`` (idle: nothing
    else runs now), the pairs split by size over its thread and this one."""
    total = sum(int(np.size(g)) for _, _, g in pairs)
    if pool is None or len(pairs) < 2 or total < PARALLEL_MIN_VALUES:
        _add(pairs, rows)
        return
    mine: list[Pair] = []
    theirs: list[Pair] = []
    load = [0, 0]
    for pair in sorted(pairs, key=lambda p: -int(np.size(p[2]))):
        k = 0 if load[0] <= load[1] else 1
        (mine, theirs)[k].append(pair)
        load[k] += int(np.size(pair[2]))
    done = pool.submit(_add, theirs, rows)
    try:
        _add(mine, rows)
    finally:
        done.result()  # its error, if any, after this thread's own work is done


def _add(pairs: Sequence[Pair], rows: int) -> None:
    """Each pair measured; small float32 outputs of one row length a stack at a time
    (metrics.add_stacked: the same sums), their references read as the stack fills."""
    stacks: dict[int, list] = {}
    filled: dict[int, int] = {}
    for errors, reference, got in pairs:
        if not (STACKED and metrics.stackable(got, rows)):
            errors.add(reference(), got, rows)
            continue
        n = got.size // rows
        stack = stacks.setdefault(n, [])
        stack.append((errors, reference(), got))
        filled[n] = filled.get(n, 0) + got.size
        if filled[n] >= metrics.STACK_VALUES:
            metrics.add_stacked(stack, rows)
            stacks[n], filled[n] = [], 0
    for stack in stacks.values():
        if stack:
            metrics.add_stacked(stack, rows)
