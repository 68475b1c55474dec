"""An opset upgrade keeps the model's declared output shape, so the export passes the checker.

ocrspine's PP-OCRv5 recognizer (Paddle2ONNX, opset 11, its shape hints cleared) declares its
3-D output as ``shape {}``. Upgrading it to opset 13 for per-channel weights, onnx's version
converter (its Softmax adapter, on an axis other than the last) left the output with no
shape at all, and ``bitlens export`` and ``bitlens search`` stopped with "the exported model
does not pass the ONNX checker: Field 'shape' of 'type' is required but missing".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from tests.builders import init, model, weights
from tests.cli_fork import run_bitlens


def _softmax_on_axis_1() -> onnx.ModelProto:
    """x [n, 4, 6] -> MatMul (6x5) -> Softmax(axis=1) -> y, declared ``shape {}``."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]),
         helper.make_node("Softmax", ["m"], ["y"], axis=1)],
        "declared_scalar",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
        [init("w", weights((6, 5), seed=3, channel_axis=1))],
    )  # fmt: skip
    return model(graph, 11)


def test_w8a8_export_of_an_opset_11_model_whose_output_is_declared_scalar(
    tmp_path: Path,
) -> None:
    path, out = tmp_path / "m.onnx", tmp_path / "w8a8.onnx"
    onnx.save(_softmax_on_axis_1(), path)
    before = path.read_bytes()
    res = run_bitlens("export", str(path), "--preset", "W8A8", "-o", str(out), "--json",
                      timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    fid = json.loads(res.stdout)
    assert fid["passed"] and fid["opset"] >= 13, (fid["opset"], fid["failures"])
    exported = onnx.load(str(out))
    onnx.checker.check_model(exported)
    y = exported.graph.output[0]
    assert y.name == "y" and y.type.tensor_type.HasField("shape")
    assert path.read_bytes() == before
    # the file runs in plain ONNX Runtime and stays close to the float model
    x = np.random.default_rng(0).standard_normal((2, 4, 6)).astype(np.float32)
    ref, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                .run(None, {"x": x})[0] for p in (path, out))  # fmt: skip
    assert ref.shape == got.shape == (2, 4, 5)
    np.testing.assert_allclose(got, ref, atol=0.05)
