"""The last run's layer outputs measured on two threads (engine/measure.py) give the very
numbers one thread gives."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bitlens.core import metrics
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, measure
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.engine_models import small_cnn
from tests.core.test_engine_same_structure import residual_cnn


def _pairs(seed: int, rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for size in (3, 700, 40_000, 90_000, 5, 250_000):
        r = rng.standard_normal((rows, size)).astype(np.float32)
        out.append((r, r + np.float32(0.01) * rng.standard_normal(r.shape).astype(np.float32)))
    return out


def _const(value: np.ndarray):
    return lambda: value


@pytest.mark.parametrize("rows", [1, 4])
def test_two_threads_give_the_sums_of_one(rows: int, monkeypatch) -> None:
    monkeypatch.setattr(measure, "PARALLEL_MIN_VALUES", 1)
    feeds = [_pairs(seed, rows) for seed in range(3)]
    one = [metrics.SampleErrors() for _ in feeds[0]]
    two = [metrics.SampleErrors() for _ in feeds[0]]
    with ThreadPoolExecutor(1) as pool:
        for pairs in feeds:
            measure.measure([(e, _const(r), g) for e, (r, g) in zip(one, pairs, strict=True)], rows)
            measure.measure(
                [(e, _const(r), g) for e, (r, g) in zip(two, pairs, strict=True)], rows, pool
            )
    assert [e.result() for e in one] == [e.result() for e in two]


def test_an_error_on_the_other_thread_reaches_the_caller(monkeypatch) -> None:
    monkeypatch.setattr(measure, "PARALLEL_MIN_VALUES", 1)
    r = np.zeros((1, 8), np.float32)
    bad = np.zeros((1, 2, 4))
    pairs = [(metrics.SampleErrors(), lambda: r, r), (metrics.SampleErrors(), lambda: r, bad)]
    with ThreadPoolExecutor(1) as pool, pytest.raises(ValueError, match="rank mismatch"):
        measure.measure(pairs, 1, pool)


@pytest.mark.parametrize(("build", "dims"), [(small_cnn, {}), (residual_cnn, {"N": 3})])
def test_evaluations_measured_on_two_threads_equal_one(build, dims, monkeypatch) -> None:
    monkeypatch.setattr(measure, "PARALLEL_MIN_VALUES", 1)
    loaded = from_proto(build())
    info = loaded.info
    data = Dataset.random(info, n=6, seed=2, dims=dims)
    base = Plan.preset(info, "W8A8")
    names = [la.name for la in info.layers]
    plans = [base, *(base.with_choices({n: LayerChoice.of("int4 sym ch")}) for n in names)]
    engines = []
    for threads in (True, False):
        engine = Engine(loaded, data, device="cpu")
        engine.measure_threads = threads
        engines.append([engine.evaluate(p) for p in plans])
    assert engines[0] == engines[1]
