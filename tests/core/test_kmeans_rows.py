"""k-means of many rows at once gives the one-row fit's numbers, bit for bit.

``lut_rows.kmeans_rows`` replaced a Python loop of ``lut.kmeans_1d`` and
``lut.nearest`` over the channels (half a minute on a 30522-row embedding);
the loop is kept here as the reference and compared on random tensors, on
hypothesis's odd ones (signed zeros, subnormals, ties, float32's extremes) and
through the k-means format itself.
"""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitlens.core.formats import codec, lut, lut_rows


def _one_row_at_a_time(groups: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    books = np.stack([lut.kmeans_1d(g, k) for g in groups])
    codes = np.stack([lut.nearest(g, b) for g, b in zip(groups, books, strict=True)])
    return books, codes


def _assert_same(groups: np.ndarray, k: int) -> None:
    books, codes = lut_rows.kmeans_rows(groups, k)
    ref_books, ref_codes = _one_row_at_a_time(np.asarray(groups, np.float64), k)
    assert books.dtype == np.float32 and codes.dtype == np.uint8
    np.testing.assert_array_equal(books.view(np.uint32), ref_books.view(np.uint32))
    np.testing.assert_array_equal(codes, ref_codes)


def _rows(seed: int, kind: str) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 40)), int(rng.integers(1, 300)))
    if kind == "normal":
        x = rng.standard_normal(shape) * rng.uniform(1e-3, 30, (shape[0], 1))
    elif kind == "laplace":
        x = rng.laplace(size=shape) + rng.uniform(-5, 5, (shape[0], 1))
    elif kind == "ties":  # few distinct values: empty clusters, repeated levels
        x = rng.integers(-3, 4, shape) * 0.25
    else:  # "signs": zeros of both signs among small values
        x = rng.choice(np.array([-0.0, 0.0, 1e-40, -1e-40, 1.0, -2.0], np.float32), shape)
    return x.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("kind", ["normal", "laplace", "ties", "signs"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("k", [2, 4, 16, 64])
def test_rows_at_once_equal_one_row_at_a_time(kind: str, seed: int, k: int) -> None:
    _assert_same(_rows(seed, kind), k)


def test_chunks_of_rows_do_not_change_the_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _rows(11, "normal")
    monkeypatch.setattr(lut_rows, "CHUNK_VALUES", 7)  # a chunk per few rows
    _assert_same(x, 16)


def test_a_large_codebook_counts_codes_by_search() -> None:
    x = np.random.default_rng(3).laplace(size=(5, 2000)).astype(np.float32).astype(np.float64)
    assert lut_rows.FEW_THRESHOLDS < 2**8 - 1  # the search path, not the comparisons
    _assert_same(x, 256)


def test_rows_that_are_not_float32_values_take_the_one_row_path() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 50)).astype(np.float32).astype(np.float64)
    x[1] = rng.standard_normal(50)  # float64 values: not keyable as float32
    x[4, 7] = 0.1  # one value between two float32 numbers
    _assert_same(x, 4)


# quantize() refuses NaN and infinities before any format sees them
values = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, max_side=30), elements=values),
    st.sampled_from([2, 4, 8]),
)
def test_any_float32_rows(x: np.ndarray, k: int) -> None:
    _assert_same(x.astype(np.float64), k)


@pytest.mark.parametrize("name", ["km4 ch0", "km2 ch1", "km3 ch0"])
def test_kmeans_format_keeps_the_one_row_numbers(name: str) -> None:
    x = (np.random.default_rng(9).standard_normal((37, 29)) * 3).astype(np.float32)
    q = codec.quantize(x, name)
    groups = np.moveaxis(x, int(name[-1]), 0).reshape(x.shape[int(name[-1])], -1)
    books, codes = _one_row_at_a_time(groups.astype(np.float64), 2**q.fmt.bits)
    np.testing.assert_array_equal(q.codebook.view(np.uint32), books.view(np.uint32))
    got = np.moveaxis(q.codes, int(name[-1]), 0).reshape(codes.shape)
    np.testing.assert_array_equal(got, codes)
