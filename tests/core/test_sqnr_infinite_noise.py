"""An approximation holding an infinity has infinite noise: its SQNR is -inf dB. Every SQNR
took ``log10(signal / inf)`` = log10(0) and raised "math domain error" out of the
evaluation (an fp16 activation past 65504 casts to inf; nonfinite.py names the layer, but
the evaluation never returned to say so). Found while measuring small outputs in stacks
(docs/benchmarks.md, "depthrows, session 16")."""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from bitlens.core import metrics
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan


def test_every_sqnr_of_an_infinite_error_is_minus_infinity() -> None:
    ref = np.ones((2, 8), np.float32)
    approx = ref.copy()
    approx[0, 0] = np.inf
    assert metrics.sqnr_db(ref, approx) == -math.inf
    assert metrics.tensor_error(ref, approx).sqnr_db == -math.inf
    assert metrics.tensor_error_f64(ref, approx).sqnr_db == -math.inf
    assert metrics.row_sqnr_db(ref, approx) == [-math.inf, math.inf]
    e = metrics.SampleErrors()
    e.add(ref, approx, 2)
    assert e.result()[1] == (-math.inf, math.inf)
    # a finite ratio under the smallest float (1e-300 / 1e300 in float64)
    assert metrics.sqnr_db(np.array([1e-150]), np.array([1e150])) == -math.inf


def test_an_fp16_activation_past_its_range_evaluates() -> None:
    w = np.full((4, 3), 0.5, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    loaded = from_proto(model)
    x = np.full((2, 4), 1e5, np.float32)  # past fp16's 65504: cast to inf
    x[1] = 1.0
    data = Dataset(({"x": x}, {"x": x}), calibration=(0,), evaluation=(1,))
    got = Engine(loaded, data, device="cpu").evaluate(
        Plan(loaded.info, {"mm": LayerChoice.of("fp16", "fp16")})
    )
    assert got.layers["mm"].accumulated.sqnr_db == -math.inf
    assert got.outputs["y"].error.sqnr_db == -math.inf
