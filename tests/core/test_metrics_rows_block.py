"""ErrorSums.add_rows checks for float32 overflow once per block (on the float64 totals)
and reads row SQNRs through tolist(): the same figures, bit for bit, as checking every
row's sums and converting each value (the way it was)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bitlens.core import metrics


def _per_row_checked(r: np.ndarray, a: np.ndarray) -> tuple[list[float], tuple]:
    """The former block step: every row sum checked, each value converted alone."""
    dtype = metrics._work_dtype(r.dtype, a.dtype)
    rows, n = r.shape
    per = max(1, metrics.CHUNK // max(1, n))
    out: list[float] = []
    noise = signal = power_a = cross = max_abs = 0.0
    for s in range(0, rows, per):
        rc = r[s : s + per].astype(dtype, copy=False)
        ac = a[s : s + per].astype(dtype, copy=False)
        sums = metrics._row_sums(rc, ac)
        if dtype == np.float32 and not all(np.isfinite(x).all() for x in sums[:4]):
            sums = metrics._row_sums(rc.astype(np.float64), ac.astype(np.float64))
        nz, sg, pa, cr, mx = sums
        noise += float(nz.sum(dtype=np.float64))
        signal += float(sg.sum(dtype=np.float64))
        power_a += float(pa.sum(dtype=np.float64))
        cross += float(cr.sum(dtype=np.float64))
        max_abs = max(max_abs, float(mx))
        out.extend(metrics._sqnr(float(g), float(z)) for g, z in zip(sg, nz, strict=True))
    return out, (noise, signal, power_a, cross, max_abs)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_block_check_equals_the_per_row_check(dtype) -> None:
    rng = np.random.default_rng(7)
    r = rng.standard_normal((300, 256)).astype(dtype)
    a = (r + rng.normal(0, 0.05, r.shape)).astype(dtype)
    a[3] = r[3]  # exact row: inf dB
    r[5] = 0  # zero signal with noise: -inf dB
    if dtype == np.float32:
        r[7, :4] = 3e19  # float32 squares overflow in this block only
    sums = metrics.ErrorSums()
    got = sums.add_rows(r, a)
    want, totals = _per_row_checked(r, a)
    assert got == want
    assert (sums.noise, sums.signal, sums.power_a, sums.cross, sums.max_abs) == totals
    assert got[3] == math.inf and got[5] == -math.inf
    if dtype == np.float32:
        assert math.isfinite(got[7])  # redone in float64


def test_block_max_abs_equals_the_whole_difference() -> None:
    """ErrorSums.add takes |ref - approx| in place per block: its max equals numpy's over the
    whole difference, in float32, in the float64 redo of an overflowing block, and for
    float64 inputs."""
    rng = np.random.default_rng(4)
    n = 3 * metrics.CHUNK + 17
    ref = rng.standard_normal(n).astype(np.float32)
    approx = ref + np.float32(0.01) * rng.standard_normal(n).astype(np.float32)
    approx[metrics.CHUNK + 5] = ref[metrics.CHUNK + 5] - np.float32(3.0)  # the largest
    big = ref.copy()
    big[7] = np.float32(3e19)  # float32 squares overflow: that block runs in float64
    for r, a in ((ref, approx), (big, approx), (ref.astype(np.float64), approx.astype(np.float64))):
        want = float(np.max(np.abs(r - a)))
        r_before, a_before = r.copy(), a.copy()
        assert metrics.ErrorSums().add(r, a).max_abs == want
        # the inputs are left as they were (only the block's own difference is overwritten)
        np.testing.assert_array_equal(r, r_before)
        np.testing.assert_array_equal(a, a_before)
