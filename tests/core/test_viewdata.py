"""Histograms and format grids for the detail view, against the codec they describe."""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core.formats import dequantize, parse_format, quantize
from bitlens.core.viewdata import MAX_LEVELS, distribution, histogram, scatter_pairs


def _w(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(8, 32)).astype(np.float32)
    w[5] *= 3.0  # channel 5 has the widest range
    return w


def test_histogram_counts_every_finite_value() -> None:
    x = np.array([0.0, 1.0, 1.0, np.nan, np.inf, 2.0])
    edges, counts = histogram(x, bins=4)
    assert counts.sum() == 4 and edges[0] == 0.0 and edges[-1] == 2.0
    edges, counts = histogram(np.full(5, 3.0), bins=3)
    assert counts.sum() == 5 and edges[0] < 3.0 < edges[-1]


@pytest.mark.parametrize(
    "name", ["int4 sym ch0", "int3 asym ch0", "nf4 ch0", "tern ch0", "bin ch0", "km2 ch0", "log4 ch0"]
)
def test_grid_is_that_of_the_widest_channel_in_the_full_tensor(name: str) -> None:
    w = _w()
    fmt = parse_format(name)
    d = distribution(w, fmt)
    assert d.group.startswith("channel 5 of 8")
    # every value the full-tensor quantization reconstructs in channel 5 is a drawn level
    recon = dequantize(quantize(w, fmt))[5]
    assert np.isin(np.unique(recon), d.levels).all()
    assert d.clip == (float(d.levels.min()), float(d.levels.max()))
    assert d.counts.sum() == w.size


def test_int_grid_is_the_full_code_range() -> None:
    d = distribution(_w(), parse_format("int4 asym ch0"))
    assert d.levels.size == 16
    steps = np.diff(d.levels)
    assert np.allclose(steps, steps[0], rtol=1e-5)


def test_dense_grids_show_only_their_clip_range() -> None:
    w = _w()
    d8 = distribution(w, parse_format("int8 sym"))
    assert d8.levels.size == 0 and MAX_LEVELS < 256
    assert d8.clip[1] == pytest.approx(np.abs(w).max(), rel=1e-2)
    f8 = distribution(w, parse_format("fp8e4m3fn"))
    assert f8.levels.size == 0 and f8.clip is not None
    assert f8.clip[1] == pytest.approx(np.abs(w).max(), rel=1e-6)
    h = distribution(w, parse_format("fp16"))
    assert h.clip is None and h.group == "plain cast"
    none = distribution(w, None)
    assert none.fmt is None and none.clip is None


def test_calibrated_range_sets_the_activation_grid() -> None:
    x = np.linspace(-1, 3, 1000, dtype=np.float32)
    d = distribution(x, parse_format("uint4 asym"), value_range=(0.0, 2.0))
    assert d.clip[0] == pytest.approx(0.0, abs=1e-6)
    assert d.clip[1] == pytest.approx(2.0, rel=1e-5)


def test_block_grid_names_its_block() -> None:
    d = distribution(_w(), parse_format("int4 sym blk8@1"))
    assert d.group.startswith("block ") and "of 32" in d.group


def test_scatter_pairs_thins_evenly_and_drops_non_finite() -> None:
    ref = [np.arange(10_000, dtype=np.float32).reshape(100, 100)]
    approx = [ref[0] + 1]
    r, q = scatter_pairs(ref, approx, max_points=100)
    assert r.size == 100 and np.all(q - r == 1) and r[0] == 0 and r[-1] == 9999
    r, q = scatter_pairs([np.array([1.0, np.nan])], [np.array([1.0, 2.0])])
    assert r.tolist() == [1.0]
    # another length is matched zero-padded (tests/core/test_data_dependent_outputs.py);
    # another rank is no match
    with pytest.raises(ValueError):
        scatter_pairs([np.zeros(3)], [np.zeros((1, 4))])


def test_per_channel_calibrated_range_picks_the_widest_channel() -> None:
    """A per-channel activation grid uses the calibrated range of the channel shown."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (4, 3, 5, 5)) * np.array([1.0, 6.0, 2.0])[None, :, None, None]
    lo = np.zeros((1, 3, 1, 1))
    hi = np.array([1.0, 5.0, 2.0]).reshape(1, 3, 1, 1)  # calibrated, clipping channel 1 at 5
    d = distribution(x, parse_format("uint8 asym ch1"), value_range=(lo, hi))
    assert "channel 1" in d.group
    assert d.clip == pytest.approx((0.0, 5.0), abs=0.02)
