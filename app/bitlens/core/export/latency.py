"""Median latency of a model in a plain ONNX Runtime session (default options)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
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


def median_latency(
    sess: ort.InferenceSession,
    feed: Mapping[str, np.ndarray],
    budget_s: float = BUDGET_S,
    min_runs: int = MIN_RUNS,
) -> Timing:
    """Run ``feed`` WARMUP times, then time single runs until ``min_runs`` and ``budget_s``
    are both met (at most MAX_RUNS)."""
    outputs = [o.name for o in sess.get_outputs()]
    for _ in range(WARMUP):
        sess.run(outputs, dict(feed))
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < MAX_RUNS and (
        len(times) < min_runs or time.perf_counter() - start < budget_s
    ):
        t0 = time.perf_counter()
        sess.run(outputs, dict(feed))
        times.append(time.perf_counter() - t0)
    return Timing(1000.0 * statistics.median(times), len(times))
