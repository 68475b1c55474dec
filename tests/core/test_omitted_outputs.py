"""A recurrent layer whose optional first output ``Y`` is omitted (``""``), only its last
state read: the float reference listed ``""`` among its outputs and ONNX Runtime refused
the session ("Could not find OrtValue with name ''"): no evaluation, sweep or export ran.
The loader's copy names the output (model/optional_outputs.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.builders import FLOAT, init, model, weights
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def lstm_last_state_only() -> onnx.ModelProto:
    """x[5,2,6] -> LSTM(8), outputs ("", yh, "") -> Squeeze -> Gemm -> y[2,3]."""
    h, d = 8, 6
    mk = helper.make_node
    g = helper.make_graph(
        [mk("LSTM", ["x", "W", "R"], ["", "yh", ""], name="lstm", hidden_size=h),
         mk("Squeeze", ["yh", "axes"], ["s"]), mk("Gemm", ["s", "wo"], ["y"], name="head")],
        "lstm_last_state", [helper.make_tensor_value_info("x", FLOAT, [5, 2, d])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 3])],
        [init("W", weights((1, 4 * h, d), seed=1, channel_axis=1)),
         init("R", weights((1, 4 * h, h), seed=2, channel_axis=1)),
         init("axes", np.array([0], np.int64)), init("wo", weights((h, 3), seed=3))],
    )  # fmt: skip
    return model(g, opset=17)


def test_lstm_with_omitted_y_evaluates_and_exports(tmp_path: Path) -> None:
    proto = lstm_last_state_only()
    m = from_proto(proto)
    engine = Engine(m, random_feeds(m.info, 2), device="cpu")
    plan = Plan.uniform(m.info, "int8 sym ch", None)
    assert np.isfinite(engine.evaluate(plan).outputs["y"].error.sqnr_db)
    _, report = run(engine, plan, tmp_path / "q.onnx")
    assert report.passed, report.to_dict()
