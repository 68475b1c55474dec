"""The activation sandbox rows: static against a given range, dynamic per feed as ONNX
Runtime's DynamicQuantizeLinear computes it."""

from __future__ import annotations

import numpy as np

from bitlens.core.activation_table import activation_rows
from bitlens.core.metrics import ErrorSums
from tests.core.ort_dynamic import dynamic_qdq_sqnr


def test_static_and_dynamic_rows() -> None:
    rng = np.random.default_rng(0)
    feeds = [(rng.normal(0.3, 1, (2, 5, 7)) * s).astype(np.float32) for s in (1, 3, 0.2)]
    feeds.append(np.abs(feeds[0]) + 0.5)  # all positive: zero is still in the range
    asked: list[str] = []

    def static_range(fmt):
        asked.append(fmt.name)
        return (-1.0, 1.0)

    rows = {
        r.format: r
        for r in activation_rows(
            feeds, ["uint8 asym", "uint8 asym mse", "fp16", "uint8 asym ch"],
            lambda f: f.with_axis(1) if "ch" in f.name else f, static_range,
        )
    }  # fmt: skip
    assert rows["uint8 asym"].dynamic.sqnr_db == dynamic_qdq_sqnr(feeds)
    # at run time the range is min/max whatever the static clipping method
    assert rows["uint8 asym mse"].dynamic == rows["uint8 asym"].dynamic
    assert rows["fp16"].dynamic is None and rows["uint8 asym ch"].dynamic is None
    # static: the given range [-1, 1] clips the wider feeds, so it loses to dynamic here
    assert rows["uint8 asym"].static.sqnr_db < rows["uint8 asym"].dynamic.sqnr_db
    ref = ErrorSums()
    s = np.float32(2.0 / 255)
    z = np.float32(np.round(np.float32(1.0) / s))  # qmin - lo / s
    for x in feeds:
        q = np.clip(np.round(x / s) + z, 0, 255)
        ref.add(x, ((q - z) * s).astype(np.float32))
    assert np.isclose(rows["uint8 asym"].static.sqnr_db, ref.result().sqnr_db, rtol=1e-6)
    assert "fp16" not in asked  # a plain cast has no range


def test_per_channel_range_of_a_single_channel_input() -> None:
    """A conv input with one channel (a grey image): the engine's per-channel range is
    shaped (1, 1, 1, 1) to broadcast; the sandbox failed on it ("calibrated range has
    shape (1, 1, 1, 1), expected (1,)")."""
    x = np.random.default_rng(1).normal(size=(2, 1, 4, 4)).astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    (row,) = activation_rows(
        [x], ["uint8 asym ch"], lambda f: f.with_axis(1),
        lambda f: (np.full((1, 1, 1, 1), lo), np.full((1, 1, 1, 1), hi)),
    )  # fmt: skip
    (flat,) = activation_rows([x], ["uint8 asym"], lambda f: f, lambda f: (lo, hi))
    assert row.static == flat.static  # one channel: the same as per tensor
