"""An output that is NaN under a plan: its max abs error says NaN (it said 0), and the
warning says why when a float activation format cannot hold the layer's input (seen on
openWakeWord's mel front end: a power spectrum of 1e12 cast to fp16)."""

from __future__ import annotations

import re

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.metrics import ErrorSums
from bitlens.core.model.loader import from_proto
from bitlens.core.nonfinite import nonfinite_warning
from bitlens.core.plan import Plan
from tests.core.test_export_verdict import _overflow_model


def test_max_abs_error_keeps_a_nan() -> None:
    ref = np.linspace(-1, 1, 40_000, dtype=np.float32)
    approx = ref.copy()
    approx[30_000] = np.nan  # in the second block of ErrorSums.CHUNK values
    want = float(np.max(np.abs(ref.astype(np.float64) - approx)))  # numpy: nan
    assert np.isnan(want)
    assert np.isnan(ErrorSums().add(ref, approx).result().max_abs)
    rows = ErrorSums()
    rows.add_rows(ref.reshape(400, 100), approx.reshape(400, 100))
    assert np.isnan(rows.result().max_abs)
    merged = ErrorSums().add(ref[:10], ref[:10]).merge(ErrorSums().add(ref, approx))
    assert np.isnan(merged.merge(ErrorSums().add(ref, ref)).result().max_abs)


def test_nan_warning_says_the_fp16_activation_overflows_and_by_how_much() -> None:
    proto = _overflow_model()
    model = from_proto(proto)
    x = np.random.default_rng(1).normal(0, 1, (4, 2, 8)).astype(np.float32)
    engine = Engine(model, Dataset(tuple({"x": v} for v in x), source="test"), device="cpu")
    for _ in engine.calibrate():
        pass
    assert nonfinite_warning(engine, Plan.preset(model.info, "W8A8")) is None
    text = nonfinite_warning(engine, Plan.preset(model.info, "W8A16"))
    assert text is not None and "first produced by layer 'head'" in text
    got = re.search(r"its fp16 input activation reaches (\S+) on the calibration data", text)
    assert got is not None, text
    # the float64 reference of head's input on the calibration samples
    w1 = next(t for t in proto.graph.initializer if t.name == "W1")
    w1v = np.frombuffer(w1.raw_data, np.float32).reshape(8, 16).astype(np.float64)
    peak = max(np.abs(x[i].astype(np.float64) @ w1v).max() for i in engine.data.calibration)
    assert abs(float(got.group(1)) - peak) <= 0.005 * peak
    assert "past fp16's largest value 65504" in text
