"""A model whose weights the file stores as int8 codes, Cast to float and scaled (as
tinyocr's PP-OCRv6 recognizer stores them), built in code."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.builders import FLOAT, model

C, K, OUT = 6, 3, 4  # conv channels, conv kernel, outputs of each MatMul
FLAT = C * 8 * 8


def _codes(shape: tuple[int, ...], seed: int, lo: int, hi: int, axis: int | None) -> np.ndarray:
    """Random int8 codes in lo..hi; every slice along ``axis`` (or the whole tensor) holds
    both ends, as a min-max quantizer leaves them."""
    rng = np.random.default_rng(seed)
    q = rng.integers(lo + 1, hi, size=shape)
    ends = np.moveaxis(q, axis, -1) if axis is not None else q[..., None]  # a view of q
    ends[(0,) * (q.ndim - 1)] = lo  # one element of every channel (or of the tensor)
    ends[(1,) + (0,) * (q.ndim - 2)] = hi
    return q.astype(np.int8)


def _decoded(name: str, codes: np.ndarray, scale: np.ndarray) -> list[onnx.NodeProto]:
    """``name = Cast(codes) * scale`` from Constant nodes, as tinyocr's file stores them."""
    return [
        helper.make_node("Constant", [], [f"{name}_q"], value=numpy_helper.from_array(codes)),
        helper.make_node("Cast", [f"{name}_q"], [f"{name}_f"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], [f"{name}_s"], value=numpy_helper.from_array(scale)),
        helper.make_node("Mul", [f"{name}_f", f"{name}_s"], [name]),
    ]


def coded_net() -> tuple[onnx.ModelProto, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """x[1,3,8,8] -> Conv -> Relu -> Flatten -> MatMul "fc" -> MatMul "head" -> y[1,4].

    conv: codes -127..127, a scale per output channel (tinyocr's layout);
    fc: codes -128..127, one scale for the tensor; head: per-channel codes, but channel 2
    stops at +-100, so min-max finds a scale of its own there."""
    conv_q = _codes((C, 3, K, K), 1, -127, 127, axis=0)
    conv_s = np.linspace(0.002, 0.01, C, dtype=np.float32).reshape(C, 1, 1, 1)
    fc_q = _codes((FLAT, OUT), 2, -128, 127, axis=None)
    fc_s = np.array(0.0037, np.float32)
    head_q = _codes((OUT, OUT), 3, -127, 127, axis=1)
    head_q[:, 2] = np.clip(head_q[:, 2], -100, 100)
    head_q[0, 2] = 100
    head_s = np.array([[0.01, 0.02, 0.03, 0.04]], np.float32)
    nodes = [
        *_decoded("conv_w", conv_q, conv_s),
        helper.make_node("Conv", ["x", "conv_w"], ["c"], pads=[1] * 4, name="conv"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        *_decoded("fc_w", fc_q, fc_s),
        helper.make_node("MatMul", ["f", "fc_w"], ["h"], name="fc"),
        *_decoded("head_w", head_q, head_s),
        helper.make_node("MatMul", ["h", "head_w"], ["y"], name="head"),
    ]
    g = helper.make_graph(
        nodes, "coded", [helper.make_tensor_value_info("x", FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", FLOAT, [1, OUT])],
    )  # fmt: skip
    stored = {"conv": (conv_q, conv_s), "fc": (fc_q, fc_s), "head": (head_q, head_s)}
    return model(g, opset=17), stored


def coded_pair() -> onnx.ModelProto:
    """x[1,3,8,8] -> Conv (int8 codes, a scale per channel: -127..127) -> Flatten -> MatMul
    "fc" (int8 codes -128..127, one scale): both on an int8 grid Bitlens reproduces."""
    conv_q = _codes((C, 3, K, K), 1, -127, 127, axis=0)
    conv_s = np.linspace(0.002, 0.01, C, dtype=np.float32).reshape(C, 1, 1, 1)
    fc_q = _codes((FLAT, OUT), 2, -128, 127, axis=None)
    nodes = [
        *_decoded("conv_w", conv_q, conv_s),
        helper.make_node("Conv", ["x", "conv_w"], ["c"], pads=[1] * 4, name="conv"),
        helper.make_node("Flatten", ["c"], ["f"]),
        *_decoded("fc_w", fc_q, np.array(0.0037, np.float32)),
        helper.make_node("MatMul", ["f", "fc_w"], ["y"], name="fc"),
    ]
    g = helper.make_graph(
        nodes, "coded_pair", [helper.make_tensor_value_info("x", FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", FLOAT, [1, OUT])],
    )  # fmt: skip
    return model(g, opset=17)
