"""Inputs and outputs sized ``-1`` (older Paddle2ONNX exports) are dynamic, as ORT reads them.

rapidocr's text-direction classifier declares ``x [-1, 3, -1, -1]``; Bitlens refused it
with "model input 'x' has a negative dimension -1" although ONNX Runtime runs it.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import ModelLoadError
from bitlens.core.model.loader import from_proto, load_model
from bitlens.core.plan import Plan


def _paddle_style(size: int = -1) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = nh.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w")
    fc = nh.from_array(rng.normal(0, 0.3, (4, 2)).astype(np.float32), "fc")
    nodes = [
        h.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c"], ["r"], name="relu"),
        h.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        h.make_node("Flatten", ["p"], ["f"], name="flatten"),
        h.make_node("MatMul", ["f", "fc"], ["y"], name="head"),
    ]
    graph = h.make_graph(
        nodes, "paddle", [h.make_tensor_value_info("x", T.FLOAT, [size, 3, size, size])],
        [h.make_tensor_value_info("y", T.FLOAT, [size, 2])], [w, fc],
    )  # fmt: skip
    model = h.make_model(graph, opset_imports=[h.make_operatorsetid("", 13)])
    model.ir_version = 8
    return model


def test_onnx_runtime_runs_minus_one_sizes_as_dynamic() -> None:
    """The behaviour Bitlens follows: the checker accepts it, ORT says None and runs it."""
    model = _paddle_style()
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [None, 3, None, None]
    out = sess.run(None, {"x": np.ones((2, 3, 8, 12), np.float32)})[0]
    assert out.shape == (2, 2)


def test_minus_one_sizes_load_as_dynamic_and_evaluate(tmp_path) -> None:
    path = tmp_path / "cls.onnx"
    onnx.save(_paddle_style(), path)
    before = path.read_bytes()
    model = load_model(path)
    assert path.read_bytes() == before  # only Bitlens's copy changes
    shape = model.info.inputs[0].shape
    assert shape[1] == 3 and all(not isinstance(d, int) for d in (shape[0], shape[2], shape[3]))
    assert any("written as -1 read as dynamic" in n for n in model.info.notes)
    data = Dataset.random(model.info, n=4, dims={"x:2": 16, "x:3": 24})
    engine = Engine(model, data, device="cpu")
    result = engine.evaluate(Plan.preset(model.info, "W8A8"))
    assert np.isfinite(result.outputs["y"].error.sqnr_db)


def test_other_negative_sizes_are_still_refused() -> None:
    with pytest.raises(ModelLoadError, match="negative dimension -2"):
        from_proto(_paddle_style(size=-2))
