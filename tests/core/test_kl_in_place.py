"""metrics.mean_kl computes its steps in one float64 copy of the scores, a block of positions
at a time where the classes are the last axis (no new array per step): the same KL, bit for
bit, as the expression with a new array per step, and the caller's scores untouched."""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core import metrics


def _kl_expression(r: np.ndarray, q: np.ndarray, axis: int) -> float:
    """The straightforward form: a new array at every step (mean_kl before session 15)."""
    ref = metrics.RefScores.of(r, axis)
    soft = metrics.softmax(q, axis)
    return float(np.mean(np.sum(ref.p * (ref.log_p - np.log(soft + metrics.KL_EPS)), axis=axis)))


def _scores(shape: tuple[int, ...], seed: int, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    r = (rng.standard_normal(shape) * 4).astype(dtype)
    q = (r + rng.standard_normal(shape) * 0.3).astype(dtype)
    return r, q


@pytest.mark.parametrize(
    ("shape", "axis"),
    [((8, 40, 661), -1), ((40, 8, 661), 2), ((8, 661, 40), 1), ((80, 4, 100), 0), ((16, 10), -1)],
)
def test_in_place_kl_equals_the_expression(shape, axis) -> None:
    for seed in range(4):
        r, q = _scores(shape, seed)
        want = _kl_expression(r, q, axis)
        assert metrics.mean_kl(r, q, axis) == want
        assert metrics.mean_kl(r, q, axis, metrics.RefScores.of(r, axis)) == want


def test_other_layouts_and_extreme_scores_give_the_expressions_kl() -> None:
    cases = []
    for seed in range(8):
        r, q = _scores((40, 8, 300), seed)
        cases += [
            (r.transpose(1, 0, 2), q.transpose(1, 0, 2), -1),  # both transposed views
            (r, np.ascontiguousarray(q.transpose(1, 0, 2)).transpose(1, 0, 2), -1),  # q alone
            (r.transpose(2, 1, 0), q.transpose(2, 1, 0), 0),
        ]
    big = q.copy()
    big[0, 0, :5] = 3e38  # float32's range: exp underflows to 0 for the rest of the row
    big[1, 1, 0] = -np.inf
    cases.append((r, big, -1))
    for rr, qq, axis in cases:
        assert metrics.mean_kl(rr, qq, axis) == _kl_expression(rr, qq, axis)


def test_the_callers_scores_are_not_written() -> None:
    r, q = _scores((8, 40, 100), 3, np.float64)  # float64: a plain asarray would alias it
    before = q.copy()
    metrics.mean_kl(r, q, -1)
    np.testing.assert_array_equal(q, before)


def _softmax_expression(x: np.ndarray, axis: int) -> np.ndarray:
    z = np.asarray(x, np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def test_softmax_and_kept_scores_equal_the_expressions_in_any_layout() -> None:
    """softmax writes its steps into one copy: the expression's values and layout, for
    float32 and float64 scores, contiguous or not, and the caller's array untouched."""
    r, _ = _scores((40, 8, 300), 11)
    wide = r.astype(np.float64)
    for x in (r, r.transpose(1, 0, 2), r[:, ::2], wide, wide.transpose(2, 1, 0)):
        before = x.copy()
        for axis in (-1, 0, 1):
            got, want = metrics.softmax(x, axis), _softmax_expression(x, axis)
            np.testing.assert_array_equal(got, want)
            assert got.strides == want.strides
            kept = metrics.RefScores.of(x, axis)
            np.testing.assert_array_equal(kept.log_p, np.log(want + metrics.KL_EPS))
        np.testing.assert_array_equal(x, before)
