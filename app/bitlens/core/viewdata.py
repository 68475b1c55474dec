"""Numbers the window's views draw, computed without Qt.

Views only read results; whatever needs arithmetic (a histogram, the grid
of values a format can represent, a thinned-out scatter of outputs) is
computed here, in the worker, so widgets stay pure drawing code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bitlens.core.formats import Format, Granularity, Grouping, family_of
from bitlens.core.metrics import zero_padded

MAX_LEVELS = 64  # a grid with more levels than this is drawn as its clip range only
DEFAULT_BINS = 120


@dataclass(frozen=True)
class Distribution:
    """A histogram of a tensor with one format's grid overlaid.

    For per-channel and block formats every group has its own grid; the one
    shown is the group with the widest value range, which ``group`` names.
    """

    edges: np.ndarray  # bin edges, len(counts) + 1
    counts: np.ndarray
    n_values: int
    fmt: str | None  # format name, None when kept float
    levels: np.ndarray  # representable values of the shown group; empty when too many to draw
    clip: tuple[float, float] | None  # outermost representable values; None for plain casts
    group: str  # e.g. "whole tensor", "channel 5 of 64 (widest range)"


def histogram(values: np.ndarray, bins: int = DEFAULT_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Counts over ``bins`` equal bins between the finite minimum and maximum."""
    v = np.asarray(values).ravel()
    # float64: numpy bins in the values' dtype, and a float32 range of -3e38..3e38 (a
    # damaged weight) overflows there to inf and an out-of-bounds bin index.
    v = (v[np.isfinite(v)] if v.dtype.kind == "f" else v).astype(np.float64)
    if v.size == 0:
        return np.array([0.0, 1.0]), np.array([0])
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:  # a constant tensor: one bin around the value
        lo, hi = lo - 0.5, hi + 0.5
    scale = 1.0 if np.isfinite(hi - lo) else 0.5  # even float64 overflows near its maximum
    counts, edges = np.histogram(v * scale, bins=bins, range=(lo * scale, hi * scale))
    return edges / scale, counts


def distribution(
    values: np.ndarray,
    fmt: Format | None,
    *,
    value_range: tuple[Any, Any] | None = None,
    bins: int = DEFAULT_BINS,
) -> Distribution:
    """Histogram of ``values`` and the grid ``fmt`` puts on them.

    ``fmt`` must have its axis bound (``bind`` in the engine) when it is per
    channel or per block. ``value_range`` is a calibrated activation range;
    without it the range comes from the values, as for weights.
    """
    x = np.asarray(values)
    edges, counts = histogram(x, bins)
    if fmt is None:
        return Distribution(edges, counts, int(x.size), None, np.empty(0), None, "kept float")
    if fmt.is_float and not fmt.has_scale:
        # fp16/bf16 are plain casts: tens of thousands of levels and a range far beyond
        # any weight; there is no grid worth drawing.
        return Distribution(edges, counts, int(x.size), fmt.name, np.empty(0), None, "plain cast")
    group, label, k = _widest_group(x, fmt)
    if value_range is not None and np.size(value_range[0]) > 1:  # calibrated per channel
        value_range = (float(np.ravel(value_range[0])[k]), float(np.ravel(value_range[1])[k]))
    family = family_of(fmt)
    levels, clip = family.grid(family.group_grid(x, fmt, k, group, value_range))
    if levels.size > MAX_LEVELS:
        levels = np.empty(0)
    return Distribution(edges, counts, int(x.size), fmt.name, levels, clip, label)


def _widest_group(x: np.ndarray, fmt: Format) -> tuple[np.ndarray, str, int]:
    """The values of the group with the widest range, a label, and the group's index."""
    if fmt.granularity is Granularity.TENSOR:
        return x.ravel(), "whole tensor", 0
    g = Grouping.of(fmt, tuple(x.shape))
    groups = g.groups(x.astype(np.float64))
    with np.errstate(invalid="ignore"):
        spread = np.nanmax(groups, axis=1) - np.nanmin(groups, axis=1)
    k = int(np.nanargmax(spread)) if np.isfinite(spread).any() else 0
    values = groups[k]
    values = values[~np.isnan(values)]
    if fmt.granularity is Granularity.CHANNEL:
        label = f"channel {k} of {g.n_groups} (widest range)"
    else:
        label = f"block {k} of {g.n_groups} (widest range)"
    return values, label, k


def scatter_pairs(
    reference: Sequence[np.ndarray], approx: Sequence[np.ndarray], max_points: int = 4000
) -> tuple[np.ndarray, np.ndarray]:
    """Matching (float, quantized) values, evenly thinned to at most ``max_points``.

    Even spacing rather than random sampling keeps the picture identical from
    one plan to the next, so a change in the scatter is a change in the model.
    """
    # an output whose length depends on the data is matched zero-padded, as its error is
    pairs = [zero_padded(a, b) for a, b in zip(reference, approx, strict=True)]
    r = np.concatenate([np.asarray(a, np.float64).ravel() for a, _ in pairs])
    q = np.concatenate([np.asarray(b, np.float64).ravel() for _, b in pairs])
    if r.shape != q.shape:
        raise ValueError(f"reference has {r.size} values, approximation {q.size}")
    if r.size > max_points:
        idx = np.linspace(0, r.size - 1, max_points).round().astype(np.int64)
        r, q = r[idx], q[idx]
    keep = np.isfinite(r) & np.isfinite(q)
    return r[keep], q[keep]
