"""Per-layer series for the plots read the evaluation as it is."""

from __future__ import annotations

import math

import numpy as np

from bitlens.core.results import Evaluation, LayerResult, TensorError
from bitlens.gui.series import SQNR_CAP_DB, divergence_counts, error_series, size_series


def _err(db: float) -> TensorError:
    return TensorError(mse=10 ** (-db / 10), sqnr_db=db, cosine=0.99, max_abs=0.1, rel_l2=0.1)


def _evaluation() -> Evaluation:
    layers = {
        "a": LayerResult("a", "int4 sym ch", None, _err(20.0), _err(21.0), _err(19.0), 100, 20),
        "b": LayerResult("b", None, None, None, None, _err(math.inf), 50, 50),
    }
    return Evaluation(layers, {}, 150, 70, 75, ("CPUExecutionProvider",), ("a", None, "a"))


def test_error_series_reads_each_source_and_metric() -> None:
    ev = _evaluation()
    s = error_series(ev, ["a", "b", "c"], "sqnr", "local")
    assert s.values[0] == 21.0 and np.isnan(s.values[1]) and np.isnan(s.values[2])
    acc = error_series(ev, ["a", "b"], "sqnr", "accumulated")
    assert acc.values.tolist() == [19.0, SQNR_CAP_DB] and acc.exact.tolist() == [False, True]
    mse = error_series(ev, ["a"], "mse", "weight")
    assert mse.values[0] == _err(20.0).mse
    cos = error_series(ev, ["a"], "cosine", "weight")
    assert cos.values[0] == 1.0 - 0.99
    assert np.isnan(error_series(None, ["a"], "sqnr", "local").values[0])


def test_size_series_and_divergence() -> None:
    ev = _evaluation()
    before, after = size_series(ev, ["a", "b"], [100, 50])
    assert before.tolist() == [100, 50] and after.tolist() == [20, 50]
    assert np.isnan(size_series(None, ["a"], [100])[1][0])
    assert divergence_counts(ev) == ([("a", 2)], 1, 3)
