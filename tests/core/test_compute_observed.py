"""MACs of layers that ONNX shape inference cannot size, from the shapes that really ran.

Transformer exports compute their reshapes from ``Shape`` ops, so static inference loses the
batch (or every) dimension of the MatMuls after them: paraphrase-MiniLM-L3-v2 counted 0 MACs
and a ViT-S 58 M instead of 4.6 G. Once the engine has run the float model, the shapes of its
float reference count instead, per batch row.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.compute import compute_of, count_macs, input_shapes
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan


def reshape_from_shape() -> onnx.ModelProto:
    """x[N, 8] -> com.microsoft Gelu -> g -> Reshape(Concat(Shape(g)[:1], [2, 4])) -> [N, 2, 4]
    -> MatMul(W[4, 3]) -> y. ONNX has no shape rule for the ONNX Runtime contrib op, so no
    static means (inference, nor evaluating the Shape arithmetic) sizes ``proj``."""
    w = np.random.default_rng(0).normal(0, 0.5, (4, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Gelu", ["x"], ["g"], name="gelu", domain="com.microsoft"),
        helper.make_node("Shape", ["g"], ["s"], end=1),
        helper.make_node("Concat", ["s", "rest"], ["shape"], axis=0),
        helper.make_node("Reshape", ["g", "shape"], ["r"], name="split"),
        helper.make_node("MatMul", ["r", "W"], ["y"], name="proj"),
    ]
    g = helper.make_graph(
        nodes,
        "reshape_from_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 3])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([2, 4]), "rest")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("com.microsoft", 1)])  # fmt: skip
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_macs_of_a_layer_inference_cannot_size_come_from_the_run() -> None:
    proto = reshape_from_shape()
    model = from_proto(proto)
    data = Dataset.random(model.info, n=8)  # feeds of 4 rows
    assert np.shape(data.samples[data.evaluation[0]]["x"])[0] == 4
    static = count_macs(proto, model.info, input_shapes(model.info, data))
    assert static.macs["proj"] is None  # what inference alone gives: not known
    engine = Engine(model, data)
    before = compute_of(engine)  # the float pass has not run: still not known, not 0
    assert before.macs["proj"] is None
    engine.evaluate(Plan(model.info))
    after = compute_of(engine)
    assert after.macs["proj"] == 2 * 3 * 4  # per row: [2, 3] outputs, K = 4
    assert compute_of(engine) is after  # counted once
