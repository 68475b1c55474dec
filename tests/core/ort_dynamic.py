"""ONNX Runtime's own dynamic quantization, the independent reference for the sandbox's
dynamic activation errors: DynamicQuantizeLinear -> DequantizeLinear, one run per feed."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from bitlens.core.metrics import ErrorSums


def dynamic_qdq_sqnr(values: list[np.ndarray]) -> float:
    """SQNR (dB) of ``values`` through ORT's uint8 dynamic quantization, over all feeds."""
    g = helper.make_graph(
        [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "dql",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    sums = ErrorSums()
    for x in values:
        sums.add(x, sess.run(["y"], {"x": x})[0])
    return sums.result().sqnr_db
