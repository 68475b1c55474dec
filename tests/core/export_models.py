"""Models for the export tests and benchmark, built in code."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.model.types import ModelInfo

IR_VERSION = 9


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def transformer_block(
    d: int = 64, ff: int = 128, seed: int = 0, opset: int = 17
) -> onnx.ModelProto:
    """One pre-norm transformer block with single-head attention, MatMul + Add linears::

    x[N,S,d] -> LayerNorm -> MatMul(Wq|Wk|Wv) + b -> softmax(Q K^T / sqrt(d)) V
             -> MatMul(Wo) + b -> + x -> LayerNorm -> MatMul(W1) + b -> Relu
             -> MatMul(W2) + b -> + -> y[N,S,d]
    """
    rng = np.random.default_rng(seed)

    def w(*shape: int, scale: float | None = None) -> np.ndarray:
        s = scale if scale is not None else 1.0 / np.sqrt(shape[0])
        return rng.normal(0, s, shape).astype(np.float32)

    inits = {
        "ln1_g": np.ones(d, np.float32), "ln1_b": np.zeros(d, np.float32),
        "ln2_g": np.ones(d, np.float32), "ln2_b": np.zeros(d, np.float32),
        "Wq": w(d, d), "bq": w(d, scale=0.02), "Wk": w(d, d), "bk": w(d, scale=0.02),
        "Wv": w(d, d), "bv": w(d, scale=0.02), "Wo": w(d, d), "bo": w(d, scale=0.02),
        "W1": w(d, ff), "b1": w(ff, scale=0.02), "W2": w(ff, d), "b2": w(d, scale=0.02),
        "scale": np.asarray(1.0 / np.sqrt(d), np.float32),
    }  # fmt: skip
    mk = helper.make_node
    nodes = [
        mk("LayerNormalization", ["x", "ln1_g", "ln1_b"], ["h"], name="ln1", axis=-1),
        mk("MatMul", ["h", "Wq"], ["q0"], name="q_proj"), mk("Add", ["q0", "bq"], ["q"]),
        mk("MatMul", ["h", "Wk"], ["k0"], name="k_proj"), mk("Add", ["k0", "bk"], ["k"]),
        mk("MatMul", ["h", "Wv"], ["v0"], name="v_proj"), mk("Add", ["v0", "bv"], ["v"]),
        mk("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        mk("MatMul", ["q", "kt"], ["s0"], name="scores"), mk("Mul", ["s0", "scale"], ["s"]),
        mk("Softmax", ["s"], ["p"], axis=-1),
        mk("MatMul", ["p", "v"], ["ctx"], name="context"),
        mk("MatMul", ["ctx", "Wo"], ["o0"], name="o_proj"), mk("Add", ["o0", "bo"], ["o"]),
        mk("Add", ["x", "o"], ["r1"]),
        mk("LayerNormalization", ["r1", "ln2_g", "ln2_b"], ["h2"], name="ln2", axis=-1),
        mk("MatMul", ["h2", "W1"], ["f0"], name="ff1"), mk("Add", ["f0", "b1"], ["f1"]),
        mk("Relu", ["f1"], ["f2"]),
        mk("MatMul", ["f2", "W2"], ["g0"], name="ff2"), mk("Add", ["g0", "b2"], ["g"]),
        mk("Add", ["r1", "g"], ["y"]),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes,
        "transformer_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", d])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return _model(g, opset)


def attention_block(
    d: int = 32, heads: int = 4, ff: int = 64, seed: int = 0, opset: int = 17
) -> onnx.ModelProto:
    """Multi-head attention as PyTorch exports it; ORT_ENABLE_ALL fuses the scaled
    Transpose/MatMul into FusedMatMul, which sums in another order than MatMul + Mul::

    x[N,S,d] -> MatMul(Wq|Wk|Wv) -> Reshape[N,S,h,d/h] -> Transpose -> q k^T -> * scale
      -> Softmax -> @ v -> Transpose -> Reshape -> MatMul(Wo) -> + x -> LayerNorm
      -> MatMul(W1) + b -> Relu -> MatMul(W2) -> + -> y[N,S,d]
    """
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0, 1 / np.sqrt(shape[0]), shape).astype(np.float32)

    dh = d // heads
    inits = {
        "Wq": w(d, d), "Wk": w(d, d), "Wv": w(d, d), "Wo": w(d, d), "W1": w(d, ff),
        "W2": w(ff, d), "b1": w(ff) * 0.1, "shape4": np.array([0, 0, heads, dh], np.int64),
        "shape3": np.array([0, 0, d], np.int64), "scale": np.asarray(dh**-0.5, np.float32),
        "ln_g": np.ones(d, np.float32), "ln_b": np.zeros(d, np.float32),
    }  # fmt: skip
    mk = helper.make_node
    nodes = []
    for n in "qkv":
        nodes += [
            mk("MatMul", ["x", f"W{n}"], [f"{n}0"], name=f"{n}_proj"),
            mk("Reshape", [f"{n}0", "shape4"], [f"{n}1"]),
            mk("Transpose", [f"{n}1"], [f"{n}2"], perm=[0, 2, 3, 1] if n == "k" else [0, 2, 1, 3]),
        ]
    nodes += [
        mk("MatMul", ["q2", "k2"], ["s0"], name="scores"), mk("Mul", ["s0", "scale"], ["s"]),
        mk("Softmax", ["s"], ["p"], axis=-1), mk("MatMul", ["p", "v2"], ["c0"], name="context"),
        mk("Transpose", ["c0"], ["c1"], perm=[0, 2, 1, 3]), mk("Reshape", ["c1", "shape3"], ["c2"]),
        mk("MatMul", ["c2", "Wo"], ["o"], name="o_proj"), mk("Add", ["x", "o"], ["r"]),
        mk("LayerNormalization", ["r", "ln_g", "ln_b"], ["h"], name="ln", axis=-1),
        mk("MatMul", ["h", "W1"], ["f0"], name="ff1"), mk("Add", ["f0", "b1"], ["f1"]),
        mk("Relu", ["f1"], ["f2"]), mk("MatMul", ["f2", "W2"], ["y0"], name="ff2"),
        mk("Add", ["h", "y0"], ["y"]),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes,
        "attention_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "S", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "S", d])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return _model(g, opset)


def conv_net(
    channels: int = 32, classes: int = 10, seed: int = 0, opset: int = 17
) -> onnx.ModelProto:
    """A small image classifier whose weights dominate the file::

    x[N,3,16,16] -> Conv(c, 3x3)+b -> Relu -> MaxPool 2 -> Conv(2c, 3x3)+b -> Relu
      -> Conv(2c, 3x3)+b -> Relu -> GlobalAveragePool -> Flatten -> Gemm(classes) -> y
    """
    rng = np.random.default_rng(seed)
    c = channels

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape).astype(np.float32)

    inits = {
        "W1": w(c, 3, 3, 3), "b1": rng.normal(0, 0.05, c).astype(np.float32),
        "W2": w(2 * c, c, 3, 3), "b2": rng.normal(0, 0.05, 2 * c).astype(np.float32),
        "W3": w(2 * c, 2 * c, 3, 3), "b3": rng.normal(0, 0.05, 2 * c).astype(np.float32),
        "W4": w(classes, 2 * c), "b4": rng.normal(0, 0.05, classes).astype(np.float32),
    }  # fmt: skip
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "W1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        mk("Relu", ["c1"], ["r1"]),
        mk("MaxPool", ["r1"], ["m1"], kernel_shape=[2, 2], strides=[2, 2]),
        mk("Conv", ["m1", "W2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        mk("Relu", ["c2"], ["r2"]),
        mk("Conv", ["r2", "W3", "b3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        mk("Relu", ["c3"], ["r3"]),
        mk("GlobalAveragePool", ["r3"], ["p"]),
        mk("Flatten", ["p"], ["f"]),
        mk("Gemm", ["f", "W4", "b4"], ["y"], name="fc", transB=1),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", classes])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return _model(g, opset)


def random_feeds(
    info: ModelInfo, n: int = 4, dims: dict[str, int] | None = None, seed: int = 0
) -> Dataset:
    """``n`` feeds of random data; named dimensions take their size from ``dims``."""
    rng = np.random.default_rng(seed)
    sizes = {"N": 2, "S": 8, "T": 3, "L": 4, **(dims or {})}
    feeds = []
    for i in range(n):
        feed: dict[str, np.ndarray] = {}
        for t in info.inputs:
            assert t.shape is not None
            shape = tuple(sizes[d] if isinstance(d, str) else int(d or 1) for d in t.shape)
            if t.dtype == "bool":
                feed[t.name] = np.asarray(i % 2 == 0)
            elif t.dtype.startswith(("int", "uint")):
                feed[t.name] = rng.integers(0, 50, shape).astype(t.dtype)
            else:
                feed[t.name] = rng.normal(0, 1, shape).astype(t.dtype)
        feeds.append(feed)
    return Dataset(tuple(feeds), source="random feeds")
