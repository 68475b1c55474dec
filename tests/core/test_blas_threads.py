"""numpy's OpenBLAS thread count, set for a block or for a generator's own steps only."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import pytest

from bitlens.core.blas_threads import blas_thread_count, blas_threads, each_step

pytestmark = pytest.mark.skipif(
    blas_thread_count() is None, reason="numpy is not built on OpenBLAS here"
)


def test_a_block_runs_one_thread_and_restores_the_count() -> None:
    before = blas_thread_count()
    with blas_threads(1):
        assert blas_thread_count() == 1
        a = np.arange(64.0).reshape(8, 8)
        np.testing.assert_array_equal(a @ a.T, np.einsum("ij,kj->ik", a, a))
    assert blas_thread_count() == before


def test_a_generator_steps_with_one_thread_its_consumer_keeps_its_own() -> None:
    before = blas_thread_count()
    seen: list[int | None] = []

    def job() -> Generator[int, None, str]:
        for i in range(3):
            seen.append(blas_thread_count())
            yield i
        return "done"

    gen = each_step(job(), 1)
    between = []
    for _ in gen:
        between.append(blas_thread_count())
    assert seen == [1, 1, 1]
    assert between == [before] * 3

    stopped = each_step(job(), 1)
    next(stopped)
    stopped.close()  # a cancelled search
    assert blas_thread_count() == before


def test_the_generator_value_comes_back() -> None:
    def job() -> Generator[int, None, str]:
        yield 1
        return "value"

    gen = each_step(job(), 1)
    assert next(gen) == 1
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert stop.value.value == "value"
