"""Small models with dynamic input dimensions, for the data and dims tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.core.engine_models import _model

HEIGHT = 8


def ocr_line(batch: int | str | None = "N", width: str | None = "width") -> onnx.ModelProto:
    """A text-line recognizer in miniature, its width dynamic (``None``: an unnamed dim)::

    x[batch,1,8,width] -> Conv(Wc,bc) -> Relu -> ReduceMean(H) -> [batch,4,width]
      -> Transpose -> [batch,width,4] -> MatMul(Wm) -> y[batch,width,5]
    """
    rng = np.random.default_rng(3)
    wc = rng.normal(0, 0.4, (4, 1, 3, 3)).astype(np.float32)
    bc = rng.normal(0, 0.1, 4).astype(np.float32)
    wm = rng.normal(0, 0.5, (4, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "Wc", "bc"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r"], ["m"], name="pool_h", axes=[2], keepdims=0),
        helper.make_node("Transpose", ["m"], ["t"], name="to_seq", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["t", "Wm"], ["y"], name="classify"),
    ]
    g = helper.make_graph(
        nodes,
        "ocr_line",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, HEIGHT, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, width, 5])],
        [
            numpy_helper.from_array(wc, "Wc"),
            numpy_helper.from_array(bc, "bc"),
            numpy_helper.from_array(wm, "Wm"),
        ],
    )
    return _model(g)


def two_inputs_shared_dim() -> onnx.ModelProto:
    """a[N,seq,4] + b[N,seq,4] -> MatMul(W) -> y[N,seq,3]: two inputs share ``seq``."""
    w = np.random.default_rng(4).normal(0, 0.5, (4, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("MatMul", ["s", "W"], ["y"], name="proj"),
    ]
    g = helper.make_graph(
        nodes,
        "shared_dim",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "seq", 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", "seq", 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "seq", 3])],
        [numpy_helper.from_array(w, "W")],
    )
    return _model(g)


def line_feeds(widths: list[int], batch: int = 1, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """One feed per width: x of shape [batch, 1, 8, width], values like a normalized image."""
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(0, 1, (batch, 1, HEIGHT, w)).astype(np.float32)} for w in widths]
