"""Small models that real exporters produce, built in code, for the loader and inventory.

Each passes ``onnx.checker.check_model`` and runs in ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8  # readable by every ONNX Runtime the project supports


def _w(rng: np.random.Generator, *shape: int, scale: float = 0.3, dtype=np.float32) -> np.ndarray:
    return (rng.normal(0, scale, shape)).astype(dtype)


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m, full_check=True)
    return m


def opset12_constant_weights(seed: int = 0) -> onnx.ModelProto:
    """Opset 12, weights as Constant nodes (old exporters), no node names::

    Constant(W1) Constant(b1)      Constant(W2)
          \\        |                  |
    x -> Conv ------+-> Relu -> Flatten -> MatMul -> y
    """
    rng = np.random.default_rng(seed)
    w1, b1, w2 = _w(rng, 4, 1, 3, 3), _w(rng, 4, scale=0.1), _w(rng, 4 * 6 * 6, 5)
    nodes = [
        helper.make_node("Constant", [], ["W1"], value=numpy_helper.from_array(w1)),
        helper.make_node("Constant", [], ["b1"], value=numpy_helper.from_array(b1)),
        helper.make_node("Constant", [], ["W2"], value=numpy_helper.from_array(w2)),
        helper.make_node("Conv", ["x", "W1", "b1"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("MatMul", ["f", "W2"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "constants",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
    )
    return _model(g, 12)


def lstm_in_if(seed: int = 0) -> onnx.ModelProto:
    """An If whose branches each run an LSTM with their own weights::

    cond ----------------------+
    x[T,N,4] -> If(then: LSTM(Wt, Rt) -> Y, else: LSTM(We, Re) -> Y) -> y
    """
    rng = np.random.default_rng(seed)
    hidden, inp = 6, 4

    def branch(tag: str) -> onnx.GraphProto:
        w, r, b = (
            _w(rng, 1, 4 * hidden, inp),
            _w(rng, 1, 4 * hidden, hidden),
            _w(rng, 1, 8 * hidden, scale=0.1),
        )
        node = helper.make_node(
            "LSTM", ["x", f"W{tag}", f"R{tag}", f"B{tag}"], [f"Y{tag}"], hidden_size=hidden
        )
        return helper.make_graph(
            [node],
            f"{tag}_branch",
            [],
            [helper.make_tensor_value_info(f"Y{tag}", TensorProto.FLOAT, [5, 1, "N", hidden])],
            [
                numpy_helper.from_array(w, f"W{tag}"),
                numpy_helper.from_array(r, f"R{tag}"),
                numpy_helper.from_array(b, f"B{tag}"),
            ],
        )

    node = helper.make_node(
        "If", ["cond"], ["y"], name="choose", then_branch=branch("t"), else_branch=branch("e")
    )
    g = helper.make_graph(
        [node],
        "lstm_in_if",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, "N", inp]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, "N", hidden])],
    )
    return _model(g, 13)


def loop_with_matmul(seed: int = 0) -> onnx.ModelProto:
    """A Loop whose body multiplies the carried state by an outer-scope weight::

    x[N,8] -> Loop(3 times: s = Tanh(MatMul(s, Wloop))) -> y
    """
    rng = np.random.default_rng(seed)
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("MatMul", ["s_in", "Wloop"], ["m"], name="body_matmul"),
            helper.make_node("Tanh", ["m"], ["s_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("s_in", TensorProto.FLOAT, ["N", 8]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("s_out", TensorProto.FLOAT, ["N", 8]),
        ],
    )
    g = helper.make_graph(
        [helper.make_node("Loop", ["trips", "", "x"], ["y"], name="loop", body=body)],
        "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [
            numpy_helper.from_array(np.asarray(3, np.int64), "trips"),
            numpy_helper.from_array(_w(rng, 8, 8), "Wloop"),
        ],
    )
    return _model(g, 13)


def fp64_gemm(seed: int = 0) -> onnx.ModelProto:
    """x[N,6] (double) -> Gemm(W fp64, transB) -> y[N,3]"""
    rng = np.random.default_rng(seed)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="gemm64", transB=1)],
        "fp64",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 3])],
        [
            numpy_helper.from_array(_w(rng, 3, 6, dtype=np.float64), "W"),
            numpy_helper.from_array(np.zeros(3, np.float64), "b"),
        ],
    )
    return _model(g, 13)


def nhwc_conv(seed: int = 0) -> onnx.ModelProto:
    """What TF converters emit: NHWC input, Transposes around an NCHW Conv::

    x[N,8,8,3] -> Transpose(0,3,1,2) -> Conv(W) -> Transpose(0,2,3,1) -> y[N,8,8,4]
    """
    rng = np.random.default_rng(seed)
    g = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["xt", "W"], ["c"], name="conv_nhwc", pads=[1, 1, 1, 1]),
            helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1]),
        ],
        "nhwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 8, 4])],
        [numpy_helper.from_array(_w(rng, 4, 3, 3, 3), "W")],
    )
    return _model(g, 13)


def embedding_model(seed: int = 0) -> onnx.ModelProto:
    """ids[N,L] (int64) -> Gather(E[50,8]) -> MatMul(W[8,2]) -> y[N,L,2]"""
    rng = np.random.default_rng(seed)
    g = helper.make_graph(
        [
            helper.make_node("Gather", ["E", "ids"], ["e"], name="embed"),
            helper.make_node("MatMul", ["e", "W"], ["y"], name="proj"),
        ],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "L"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L", 2])],
        [numpy_helper.from_array(_w(rng, 50, 8), "E"), numpy_helper.from_array(_w(rng, 8, 2), "W")],
    )
    return _model(g, 13)


def stateful_gru(seed: int = 0) -> onnx.ModelProto:
    """A streaming GRU step: the hidden state is an input and an output::

    x[T,1,4], h0[1,1,5] -> GRU(W, R, B) -> Y, h1 -> MatMul(Wo) on Y_h -> y
    """
    rng = np.random.default_rng(seed)
    hidden = 5
    g = helper.make_graph(
        [
            helper.make_node(
                "GRU", ["x", "W", "R", "B", "", "h0"], ["Y", "h1"], name="gru", hidden_size=hidden
            ),
            helper.make_node("MatMul", ["h1", "Wo"], ["y"], name="head"),
        ],
        "stateful_gru",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 1, 4]),
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, 1, hidden]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 3]),
            helper.make_tensor_value_info("h1", TensorProto.FLOAT, [1, 1, hidden]),
        ],
        [
            numpy_helper.from_array(_w(rng, 1, 3 * hidden, 4), "W"),
            numpy_helper.from_array(_w(rng, 1, 3 * hidden, hidden), "R"),
            numpy_helper.from_array(_w(rng, 1, 6 * hidden, scale=0.1), "B"),
            numpy_helper.from_array(_w(rng, hidden, 3), "Wo"),
        ],
    )
    return _model(g, 14)
