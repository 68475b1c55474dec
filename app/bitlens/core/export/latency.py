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
BUDGET_S = 1.5  # per model (paired_latency: both together); small models get more runs


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


MIN_PAIRS = 3  # a model taking a second a run (a batch of 8 text lines) still gets a median


def paired_latency(
    a: ort.InferenceSession,
    b: ort.InferenceSession,
    feed: Mapping[str, np.ndarray],
    budget_s: float = BUDGET_S,
    min_pairs: int = MIN_PAIRS,
    *,
    a_warm: bool = False,
) -> tuple[Timing, Timing]:
    """Median latency of two models (the export and the float model), run in turn.

    Alternating puts both under the same load from other processes, so their ratio is
    stable with fewer runs than timing one model after the other: the pairs stop once
    ``min_pairs`` and ``budget_s`` (for both together) are met, at most MAX_RUNS each. One
    warm-up run each, none for ``a`` when ``a_warm`` (it ran the evaluation feeds)."""
    outs = [[o.name for o in s.get_outputs()] for s in (a, b)]
    for s, names, warm in zip((a, b), outs, (a_warm, False), strict=True):
        if not warm:
            s.run(names, dict(feed))
    times: tuple[list[float], list[float]] = ([], [])
    start = time.perf_counter()
    while len(times[0]) < MAX_RUNS and (
        len(times[0]) < min_pairs or time.perf_counter() - start < budget_s
    ):
        for s, names, got in zip((a, b), outs, times, strict=True):
            t0 = time.perf_counter()
            s.run(names, dict(feed))
            got.append(time.perf_counter() - t0)
    ta, tb = (Timing(1000.0 * statistics.median(t), len(t)) for t in times)
    return ta, tb
