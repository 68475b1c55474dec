"""Per-layer series for the plots, read from an evaluation (no Qt, no new numbers).

Values are read from the records; the only changes are for drawing: an
exact result (infinite SQNR) is drawn at a cap and flagged, and cosine
similarity is shown as the distance 1 - cos so that every metric but
SQNR reads "lower is better" on the same kind of axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bitlens.core.results import Evaluation, LayerResult, TensorError

SQNR_CAP_DB = 80.0  # exact results are drawn at this height
METRICS = {"sqnr": "SQNR (dB)", "mse": "MSE", "cosine": "cosine distance (1 − cos)"}
SOURCES = {"local": "local", "accumulated": "accumulated", "weight": "weight"}


@dataclass(frozen=True)
class ErrorSeries:
    values: np.ndarray  # NaN where the layer has no such error (e.g. kept float)
    exact: np.ndarray  # bool: an infinite SQNR drawn at the cap
    sqnr: np.ndarray  # the SQNR behind each bar, for its colour (NaN when none)


def error_series(
    evaluation: Evaluation | None, layers: Sequence[str], metric: str, source: str
) -> ErrorSeries:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}")
    n = len(layers)
    values = np.full(n, np.nan)
    exact = np.zeros(n, bool)
    sqnr = np.full(n, np.nan)
    if evaluation is None:
        return ErrorSeries(values, exact, sqnr)
    for i, name in enumerate(layers):
        err = _pick(evaluation.layers.get(name), source)
        if err is None:
            continue
        sqnr[i] = err.sqnr_db
        if metric == "sqnr":
            if math.isinf(err.sqnr_db):
                exact[i] = err.sqnr_db > 0
                values[i] = SQNR_CAP_DB if err.sqnr_db > 0 else 0.0
            else:
                values[i] = err.sqnr_db
        elif metric == "mse":
            values[i] = err.mse
        else:
            values[i] = 1.0 - err.cosine
    return ErrorSeries(values, exact, sqnr)


def size_series(
    evaluation: Evaluation | None, layers: Sequence[str], bytes_before: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Bytes before and after per layer; "after" is NaN until evaluated."""
    before = np.asarray(bytes_before, dtype=np.float64)
    after = np.full(len(layers), np.nan)
    if evaluation is not None:
        for i, name in enumerate(layers):
            r = evaluation.layers.get(name)
            if r is not None:
                after[i] = r.bytes_after
    return before, after


def _pick(r: LayerResult | None, source: str) -> TensorError | None:
    if r is None:
        return None
    return {"local": r.local, "accumulated": r.accumulated, "weight": r.weight}[source]


def divergence_counts(evaluation: Evaluation | None) -> tuple[list[tuple[str, int]], int, int]:
    """Layers where evaluation samples first diverge, most frequent first; also how many
    samples never diverge and how many there are."""
    if evaluation is None:
        return [], 0, 0
    counts: dict[str, int] = {}
    clean = 0
    for layer in evaluation.first_divergence:
        if layer is None:
            clean += 1
        else:
            counts[layer] = counts.get(layer, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ranked, clean, len(evaluation.first_divergence)
