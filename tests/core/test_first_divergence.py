"""Engine._first_divergence (one array test) names, per sample, the same first layer below
DIVERGENCE_DB as the loop over layers and samples it replaced."""

from __future__ import annotations

import math

import numpy as np

from bitlens.core.engine.engine import DIVERGENCE_DB, Engine


def _loop(rows, names):
    first = [None] * len(rows[0])
    for name, sqnrs in zip(names, rows, strict=True):
        for s, v in enumerate(sqnrs):
            if first[s] is None and v < DIVERGENCE_DB:
                first[s] = name
    return tuple(first)


def test_first_divergence_equals_the_loop() -> None:
    rng = np.random.default_rng(2)
    names = [f"l{k}" for k in range(30)]
    rows = [tuple(rng.uniform(5, 60, 17).tolist()) for _ in names]
    rows[4] = (math.inf, -math.inf, math.nan, *rows[4][3:])
    rows[9] = (DIVERGENCE_DB, *rows[9][1:])  # not below
    rows = [tuple(v if v < 20 or k % 3 else 50.0 for v in r) for k, r in enumerate(rows)]
    assert Engine._first_divergence(rows, names) == _loop(rows, names)
    high = [tuple([50.0, math.inf]) for _ in names]
    assert Engine._first_divergence(high, names) == (None, None)
    assert Engine._first_divergence([], []) == ()
    assert Engine._first_divergence([(), ()], ["a", "b"]) == ()
