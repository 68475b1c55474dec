"""How many rows one run may take: a run's fetched values within the memory budget's share.

The loaders join feeds of equal shape along a dynamic axis 0, up to 32 rows a run
(feed_arrays.MAX_BATCH), and the engine's runs fetch every layer's input and output (the
float reference all of them, evaluations the layer outputs and cut tensors), each held until
the run returns, for every row of the run at once. napari-czann-segment 0.1.2's nucleus
segmenter (tf2onnx, NHWC 1024 x 1024 tiles, only the batch dynamic; tests/real/wheels.py,
tests/real/feeds_vision7.py) took 3.4 GB at ``eval`` with one row a run and 7.7 GB with two,
and the window, on 8 random tiles (4 rows a run), was killed at 16 GB before its first draw.
The memory budget (bitlens.core.limits) did not count a run's own values.

So before the float reference the engine runs the first unit of a joined feed alone,
fetching what the float reference fetches, and splits joined feeds into consecutive runs
whose fetched values, scaled from that run by their input bytes, fit a share of the budget
(at least one unit a run). Rows are only regrouped, never changed or reordered: every row's
numbers are those it gets in a run of its own unit (within float reassociation, as for any
batch), the labels keep their order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from itertools import pairwise

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.limits import activation_budget


def first_joined(data: Dataset) -> int | None:
    """Index of the first feed that joins two units or more, or None."""
    return next((i for i, p in enumerate(data.parts) if len(p) > 1), None)


def first_unit(data: Dataset, i: int) -> dict[str, np.ndarray]:
    """Feed ``i``'s first unit (its first ``parts[i][0]`` rows), views."""
    rows = data.parts[i][0]
    return {k: v[:rows] for k, v in data.samples[i].items()}


def input_bytes(feed: Mapping[str, np.ndarray]) -> int:
    return sum(np.asarray(v).nbytes for v in feed.values())


def run_share() -> int:
    """Bytes one run's fetched values may take: the share of the memory budget the engine
    keeps as float activations (limits.activation_budget, a quarter by default)."""
    return activation_budget()


def cap_rows(data: Dataset, per_input_byte: float, share: int) -> Dataset:
    """``data`` with every joined feed split into consecutive runs of its units whose
    fetched values (``per_input_byte`` times their input bytes) stay within ``share``; each
    run keeps one unit at least. ``data`` itself when every feed fits."""
    samples: list[dict[str, np.ndarray]] = []
    parts: list[tuple[int, ...]] = []
    index: list[list[int]] = []
    changed = False
    for i, feed in enumerate(data.samples):
        sizes = data.parts[i] if i < len(data.parts) else ()
        if len(sizes) < 2 or input_bytes(feed) * per_input_byte <= share:
            index.append([len(samples)])
            samples.append(feed)
            parts.append(sizes)
            continue
        changed = True
        bounds = np.cumsum([0, *sizes])
        groups: list[list[int]] = [[]]  # unit numbers per run
        held = 0.0
        for u, (lo, hi) in enumerate(pairwise(bounds)):
            cost = per_input_byte * sum(np.asarray(v[lo:hi]).nbytes for v in feed.values())
            if groups[-1] and held + cost > share:
                groups.append([])
                held = 0.0
            groups[-1].append(u)
            held += cost
        mine = []
        for g in groups:
            lo, hi = int(bounds[g[0]]), int(bounds[g[-1] + 1])
            mine.append(len(samples))
            samples.append({k: v[lo:hi] for k, v in feed.items()})
            parts.append(tuple(sizes[u] for u in g) if len(g) > 1 else ())
        index.append(mine)
    if not changed:
        return data
    return replace(
        data,
        samples=tuple(samples),
        calibration=tuple(j for i in data.calibration for j in index[i]),
        evaluation=tuple(j for i in data.evaluation for j in index[i]),
        parts=tuple(parts),
    )
