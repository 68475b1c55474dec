"""Small models for the engine tests, built in code."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import LayerChoice, Plan

IR_VERSION = 9  # ONNX Runtime 1.20+ reads IR 9; onnx 1.23 would write 11+


def w8a8_then_each_layer_int4(info: ModelInfo, *, w4a8: bool = True) -> list[Plan]:
    """W8A8, then W8A8 with each layer in turn at int4 (one change each), then W4A8: the plans
    the engine tests evaluate on a fast path and on the straightforward one."""
    base = Plan.preset(info, "W8A8")
    one = [base.with_choices({la.name: LayerChoice.of("int4 sym ch")}) for la in info.layers]
    return [base, *one, *([Plan.preset(info, "W4A8")] if w4a8 else [])]


def _model(graph: onnx.GraphProto, opset: int = 17) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def small_cnn(seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv(W1,b1) -> Relu -> Conv(W2) -> Relu -> GAP -> Flatten -> Gemm(W3,b3) -> y[N,10]"""
    rng = np.random.default_rng(seed)
    inits = {
        "W1": rng.normal(0, 0.3, (8, 3, 3, 3)),
        "b1": rng.normal(0, 0.1, 8),
        "W2": rng.normal(0, 0.2, (16, 8, 3, 3)),
        "W3": rng.normal(0, 0.3, (10, 16)),
        "b3": rng.normal(0, 0.1, 10),
    }
    nodes = [
        helper.make_node("Conv", ["x", "W1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W3", "b3"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes,
        "small_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    return _model(g)


def mlp_with_fragile_layer(seed: int = 0) -> onnx.ModelProto:
    """x[N,16] -> MatMul(Wa) -> Relu -> MatMul(Wb*) -> Relu -> MatMul(Wc) -> y[N,4]

    Wb carries one huge outlier per output column: per-channel int4 spends its
    whole grid on the outlier and rounds every other weight of the column to 0,
    so Wb is the layer a sensitivity sweep must single out.
    """
    rng = np.random.default_rng(seed)
    wa = rng.normal(0, 0.4, (16, 32))
    wb = rng.normal(0, 0.2, (32, 32))
    wb[rng.integers(0, 32, 32), np.arange(32)] = 2.5 * np.sign(rng.normal(size=32))  # 12 sigma
    wc = rng.normal(0, 0.3, (32, 4))
    nodes = [
        helper.make_node("MatMul", ["x", "Wa"], ["a"], name="mm_a"),
        helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
        helper.make_node("MatMul", ["ra", "Wb"], ["b"], name="mm_b"),
        helper.make_node("Relu", ["b"], ["rb"], name="relu_b"),
        helper.make_node("MatMul", ["rb", "Wc"], ["y"], name="mm_c"),
    ]
    g = helper.make_graph(
        nodes,
        "fragile_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [
            numpy_helper.from_array(wa.astype(np.float32), "Wa"),
            numpy_helper.from_array(wb.astype(np.float32), "Wb"),
            numpy_helper.from_array(wc.astype(np.float32), "Wc"),
        ],
    )
    return _model(g)


def two_input_stateful(seed: int = 0) -> onnx.ModelProto:
    """A recurrent step with a state input and output, and a second data input.

        x[N,8] --MatMul(Wx)--+
                             Add -> Tanh -> h_out[N,16] --MatMul(Wo)--> y[N,4]
        h[N,16] -MatMul(Wh)--+
    """
    rng = np.random.default_rng(seed)
    inits = {
        "Wx": rng.normal(0, 0.4, (8, 16)),
        "Wh": rng.normal(0, 0.3, (16, 16)),
        "Wo": rng.normal(0, 0.3, (16, 4)),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "Wx"], ["xa"], name="mm_x"),
        helper.make_node("MatMul", ["h", "Wh"], ["ha"], name="mm_h"),
        helper.make_node("Add", ["xa", "ha"], ["s"], name="add"),
        helper.make_node("Tanh", ["s"], ["h_out"], name="tanh"),
        helper.make_node("MatMul", ["h_out", "Wo"], ["y"], name="mm_o"),
    ]
    g = helper.make_graph(
        nodes,
        "stateful",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8]),
            helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 16]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["N", 16]),
        ],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    return _model(g)
