"""A Gemm or MatMul whose only reader is a Relu that feeds a float op (dlib's gender net:
``fc -> relu -> mul(scalar)``) is predicted float in the W8A8 export, as ONNX Runtime runs it
(bitlens.core.relu_reader).

Before, the export wrote the layer's QDQ group with a float output and the accounting, the
search and the check counted an integer kernel; ONNX Runtime fused the Gemm and its Relu into
a float FusedGemm on weights dequantized at every run and left the MatMul a float MatMul
("integer kernels: got 5 of 6" on the gender net). Now such layers keep their weights folded
(same values) and the check's count equals what runs.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from bitlens.core.engine import Engine
from bitlens.core.export.deployed import INTEGER_KERNELS, optimized_model
from bitlens.core.export.exporter import integer_kernel_layers
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.targets import TensorQuantizer
from tests.builders import FLOAT, init, model, weights
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def relu_heads() -> onnx.ModelProto:
    """x[4,16] -> Gemm(w1, b1) -> Relu -> Mul(0.5) -> MatMul(w2) -> Relu -> Mul(0.25)
    -> MatMul(w3) -> Add(b3) -> Relu -> Mul(0.5) -> y[4,5] (tf2onnx's Dense: ORT's
    MatMulAddFusion makes it a Gemm, which fused with the Relu the same way)."""
    mk = helper.make_node
    g = helper.make_graph(
        [mk("Gemm", ["x", "w1", "b1"], ["a"], name="fc"), mk("Relu", ["a"], ["r"]),
         mk("Mul", ["r", "half"], ["m"]), mk("MatMul", ["m", "w2"], ["c"], name="mm"),
         mk("Relu", ["c"], ["e"]), mk("Mul", ["e", "quarter"], ["f"]),
         mk("MatMul", ["f", "w3"], ["g"], name="dense"), mk("Add", ["g", "b3"], ["h"]),
         mk("Relu", ["h"], ["k"]), mk("Mul", ["k", "half"], ["y"])],
        "relu_heads", [helper.make_tensor_value_info("x", FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", FLOAT, [4, 5])],
        [init("w1", weights((16, 8), seed=1, channel_axis=1)), init("b1", weights((8,), seed=2)),
         init("w2", weights((8, 6), seed=3, channel_axis=1)),
         init("w3", weights((6, 5), seed=4, channel_axis=1)), init("b3", weights((5,), seed=5)),
         init("half", np.array(0.5, np.float32)), init("quarter", np.array(0.25, np.float32))],
    )  # fmt: skip
    return model(g, opset=17)


def test_gemm_and_matmul_before_a_float_relu_are_predicted_float(tmp_path: Path) -> None:
    m = from_proto(relu_heads())
    engine = Engine(m, random_feeds(m.info, 2), device="cpu")
    w8a8 = Plan.preset(m.info, "W8A8")
    placed = engine.placement(w8a8)
    assert integer_kernel_layers(m.info, w8a8, placed) == set()
    result, report = run(engine, w8a8, tmp_path / "w8a8.onnx")
    assert report.passed, report.to_dict()  # the engine's outputs equal the file's
    written = Counter(n.op_type for n in onnx.load(str(result.path)).graph.node)
    assert written["DequantizeLinear"] == 3, written  # the inputs' quantizers; weights folded
    ops = Counter(
        n.op_type for n in optimized_model(str(result.path), ["CPUExecutionProvider"]).graph.node
    )
    assert ops["FusedGemm"] == 2 and ops["MatMul"] == 1 and not ops["QGemm"], ops
    ran = {la.name: any(k in la.kernel for k in INTEGER_KERNELS) for la in report.layers}
    assert ran == {la.name: la.integer_kernel for la in report.layers}
    assert ran == dict.fromkeys(("fc", "mm", "dense"), False)
    # with the next layer's 8-bit input right after the Relu, ORT fuses: still predicted integer
    after = {**placed, "r": TensorQuantizer("r", parse_format("uint8 asym"), "r", "test")}
    assert integer_kernel_layers(m.info, w8a8, after) == {"fc"}


def test_dense_on_a_3d_input_stays_an_integer_kernel() -> None:
    """On a 3-D input ORT puts Reshapes around the Gemm its MatMulAddFusion makes, so the Relu
    does not fuse and the QGemm runs with a float output: still predicted integer, with no
    quantizer after the Relu."""
    mk = helper.make_node
    g = helper.make_graph(
        [mk("MatMul", ["x", "w"], ["a"], name="dense"), mk("Add", ["a", "b"], ["h"]),
         mk("Relu", ["h"], ["r"]), mk("Mul", ["r", "half"], ["y"])],
        "dense3d", [helper.make_tensor_value_info("x", FLOAT, [2, 4, 16])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 4, 8])],
        [init("w", weights((16, 8), seed=1, channel_axis=1)), init("b", weights((8,), seed=2)),
         init("half", np.array(0.5, np.float32))],
    )  # fmt: skip
    m = from_proto(model(g, opset=17))
    w8a8 = Plan.preset(m.info, "W8A8")
    placed = Engine(m, random_feeds(m.info, 2), device="cpu").placement(w8a8)
    assert "r" not in placed and "h" not in placed
    assert integer_kernel_layers(m.info, w8a8, placed) == {"dense"}
