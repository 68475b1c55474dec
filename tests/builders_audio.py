"""Small models shaped like audio front ends: an STFT written as a one-input-channel Conv
(Silero VAD, openWakeWord's melspectrogram), then a channel-mixing Conv."""

from __future__ import annotations

import onnx
from onnx import helper

from tests.builders import FLOAT, bias, init, model, weights


def stft_conv(bins: int = 16, kernel: int = 64, hop: int = 16, mixed: int = 8) -> onnx.ModelProto:
    """x [N, 1, T] -> Conv(bins x 1 x kernel, stride hop) -> Relu -> Conv(mixed x bins x 3)."""
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "wf", "bf"], ["f"], name="stft", strides=[hop]),
            helper.make_node("Relu", ["f"], ["r"]),
            helper.make_node("Conv", ["r", "wm", "bm"], ["y"], name="mix", pads=[1, 1]),
        ],
        "stft_conv",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 1, 256])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", mixed, None])],
        initializer=[
            init("wf", weights((bins, 1, kernel), seed=11)),
            init("bf", bias(bins, seed=12)),
            init("wm", weights((mixed, bins, 3), seed=13)),
            init("bm", bias(mixed, seed=14)),
        ],
    )
    return model(graph, opset=21)
