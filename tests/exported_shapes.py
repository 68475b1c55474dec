"""Small models shaped like the real exports that broke Bitlens: an unrolled recurrent cell
whose steps share one weight (PyTorch's exporter), convs at an old opset or on one channel."""

from __future__ import annotations

import onnx
from onnx import helper

from tests.builders import FLOAT, bias, init, model, weights


def unrolled_rnn(steps: int = 4, d: int = 16) -> onnx.ModelProto:
    """A recurrent cell unrolled over ``steps`` time steps, as PyTorch's exporter writes an
    ``nn.LSTMCell`` called in a Python loop (captcha-whisperer's CRNN: 40 Gemms reading 4
    initializers): every step's Gemm reads the same weight ``cell.w``::

        h0 = x[2,d]; h(t+1) = Tanh(Gemm(h(t), cell.w[d,d], cell.b, transB=1)); y = h(steps)
    """
    nodes, h = [], "x"
    for t in range(steps):
        gemm = helper.make_node("Gemm", [h, "cell.w", "cell.b"], [f"g{t}"], transB=1)
        gemm.name = f"cell_{t}/Gemm"
        nodes.append(gemm)
        out = "y" if t == steps - 1 else f"h{t + 1}"
        nodes.append(helper.make_node("Tanh", [f"g{t}"], [out], name=f"cell_{t}/Tanh"))
        h = out
    g = helper.make_graph(
        nodes,
        "unrolled_rnn",
        [helper.make_tensor_value_info("x", FLOAT, [2, d])],
        [helper.make_tensor_value_info("y", FLOAT, [2, d])],
        [init("cell.w", weights((d, d), seed=21, fan_in=d)), init("cell.b", bias(d, seed=22))],
    )
    return model(g)


def two_convs(in_channels: int, *, opset: int = 17, crop: bool = False) -> onnx.ModelProto:
    """x[N,in_channels,8,8] -> Conv(8 out, 3x3, pad 1) "conv1" -> Relu [-> Slice "crop" of
    rows 1..6, in its attribute form when opset < 10] -> Conv(4 out, 1x1) "conv2" -> y."""
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["h"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
    ]
    if crop:
        crop_node = helper.make_node("Slice", ["r"], ["s"], axes=[2], starts=[1], ends=[7])
        crop_node.name = "crop"
        nodes.append(crop_node)
    nodes.append(helper.make_node("Conv", ["s" if crop else "r", "w2"], ["y"], name="conv2"))
    g = helper.make_graph(
        nodes,
        "two_convs",
        [helper.make_tensor_value_info("x", FLOAT, ["N", in_channels, 8, 8])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", 4, 6 if crop else 8, 8])],
        [
            init("w1", weights((8, in_channels, 3, 3), seed=1)),
            init("w2", weights((4, 8, 1, 1), seed=2)),
        ],
    )
    return model(g, opset=opset)
