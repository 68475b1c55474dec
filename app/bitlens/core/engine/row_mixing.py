"""Whether a model's rows along axis 0 are independent, so that feeds may run joined.

The data loaders join samples and feeds of equal shape along a dynamic axis 0 (up to 32 rows
a run, feed_arrays.batches). That is only right when axis 0 is a batch: atspm-detector's
function head (atspm_detector/weights/funcnet/*_head.onnx, PyPI atspm-detector 1.1.0) calls
its axis 0 ``D``, the detectors of one signal, and attends over them (a ReduceSum over axis 0,
a Transpose putting D on the attention axis): three signals joined into one run made one
signal of 12 detectors, and every error was measured on outputs the model never gives.
Nothing in the graph's declared shapes tells the two apart, so the float model is asked: the
first unit of a joined feed run alone must give what it gives among the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.engine.row_cap import first_joined

# Rows that stand alone differ joined only by float reassociation (a GEMM's blocking changes
# with the row count): far below this, relative to the output's RMS. The detector head's
# outputs moved by 10% and more.
_MIXED = 1e-3

Run = Callable[[Mapping[str, np.ndarray]], Sequence[np.ndarray]]


def rows_mix(
    run: Run,
    feed: Mapping[str, np.ndarray],
    parts: Sequence[int],
    alone: Sequence[np.ndarray] | None = None,
) -> bool:
    """Whether the first unit of ``feed`` (``parts[0]`` rows) gives other outputs alone than
    together with the second; ``run`` is the float model's, ``alone`` its outputs on the
    first unit when the caller ran it already."""
    first, two = parts[0], parts[0] + parts[1]
    if alone is None:
        alone = run({k: v[:first] for k, v in feed.items()})
    joined = run({k: v[:two] for k, v in feed.items()})
    return outputs_mix(alone, joined, first, two)


def outputs_mix(
    alone: Sequence[np.ndarray], joined: Sequence[np.ndarray], first: int, rows: int
) -> bool:
    """Whether the outputs of a unit of ``first`` rows run alone (``alone``) differ from its
    rows of ``joined``, the outputs of a run of ``rows`` rows that starts with that unit."""
    for a, j in zip(alone, joined, strict=True):
        a, j = np.asarray(a), np.asarray(j)
        mine = _rows_of(a, j, first, rows)
        if mine is None:
            return True  # the outputs do not show the rows: they do not stand alone
        if a.dtype.kind not in "fc":
            if not np.array_equal(a, mine):
                return True
            continue
        a64, m64 = a.astype(np.float64), mine.astype(np.float64)
        if not np.array_equal(np.isfinite(a64), np.isfinite(m64)):
            return True
        ok = np.isfinite(a64)
        scale = np.sqrt(np.mean(a64[ok] ** 2)) if ok.any() else 0.0
        diff = np.sqrt(np.mean((a64[ok] - m64[ok]) ** 2)) if ok.any() else 0.0
        if diff > _MIXED * scale:
            return True
    return False


def _rows_of(alone: np.ndarray, joined: np.ndarray, first: int, two: int) -> np.ndarray | None:
    """The first unit's rows of ``joined``: along the first axis that holds ``first`` rows in
    ``alone`` and ``two`` in ``joined`` (axis 0, or 1 for a [time, batch, ...] output), every
    other axis equal; ``joined`` itself where the shapes are equal; else None."""
    if alone.shape == joined.shape:
        return joined
    if alone.ndim != joined.ndim:
        return None
    for axis in range(alone.ndim):
        rest = [d for i, d in enumerate(alone.shape) if i != axis]
        if (alone.shape[axis], joined.shape[axis]) == (first, two) and rest == [
            d for i, d in enumerate(joined.shape) if i != axis
        ]:
            return np.take(joined, np.arange(first), axis=axis)
    return None


def rows_apart_where_they_mix(
    data: Dataset, run: Run, alone: Sequence[np.ndarray] | None = None
) -> Dataset:
    """``data`` as given when its model's rows stand alone or nothing was joined; else with
    every joined feed split back into its units (Dataset.rows_apart). ``alone``: the float
    outputs of the first joined feed's first unit, when the caller ran it already."""
    joined = first_joined(data)
    if joined is None or not rows_mix(run, data.samples[joined], data.parts[joined], alone):
        return data
    return data.rows_apart()
