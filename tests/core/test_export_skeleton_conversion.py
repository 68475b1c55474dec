"""The opset conversion converts the model's skeleton and puts its large tensors back
(core/export/skeleton.py): onnx's C++ converter holds the interpreter lock for as long as it
copies the model's tensors (66-77 ms on PP-OCRv4 rec's 10.9 MB of Constant nodes, the
window's longest stall of Find Plan and export). The converted model must be the very proto
the converter makes of the whole model.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.export import opsets, skeleton


def _old_model() -> onnx.ModelProto:
    """Opset 11, every kind of tensor the converter carries, and nodes it rewrites:
    an initializer (MatMul), a Constant node in float_data (Add), a nameless Constant inside an If branch, a small
    Constant an adapter could read (kept in), Unsqueeze/ReduceSum whose axes move from an
    attribute to an input at 13, a Softmax on a non-last axis (its 11 -> 13 adapter)."""
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32), "w")
    w.data_location = TensorProto.DEFAULT  # set, not left out: the converter drops it
    big = rng.standard_normal((1, 32)).astype(np.float32).repeat(16, 0)  # [16, 32]
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(big)),
         helper.make_node("Add", ["m", "k"], ["b"])],
        "then", [], [helper.make_tensor_value_info("b", TensorProto.FLOAT, [16, 32])],
    )  # fmt: skip
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        # float_data, not raw_data: the values come back in the encoding they had
        helper.make_node("Constant", [], ["c"], value=helper.make_tensor(
            "cv", TensorProto.FLOAT, big.shape, (big * 2).ravel().tolist())),
        helper.make_node("Add", ["m", "c"], ["a"]),
        helper.make_node("Constant", [], ["flag"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("If", ["flag"], ["i"], then_branch=branch, else_branch=branch),
        helper.make_node("Add", ["a", "i"], ["s"]),
        helper.make_node("Unsqueeze", ["s"], ["u"], axes=[0]),
        helper.make_node("Softmax", ["u"], ["p"], axis=1),
        helper.make_node("ReduceSum", ["p"], ["y"], axes=[2], keepdims=0),
    ]
    g = helper.make_graph(
        nodes, "old", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w],
    )  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)], ir_version=6)


def test_the_converter_gets_the_skeleton_and_the_model_comes_back_whole(monkeypatch) -> None:
    model = _old_model()
    data = model.SerializeToString()
    whole = onnx.ModelProto.FromString(opsets._convert_bytes(data, 13))
    given: list[int] = []
    convert_bytes = opsets._convert_bytes

    def counted(b: bytes, target: int) -> bytes:
        given.append(len(b))
        return convert_bytes(b, target)

    monkeypatch.setattr(opsets, "_convert_bytes", counted)
    x = {"x": np.random.default_rng(6).standard_normal((16, 32)).astype(np.float32)}
    converted = opsets.convert(model, 13, [x])
    assert given and given[0] < len(data) - 8000, "the converter got the large tensors"
    # the same proto as the whole model's conversion (the ir version aside, set after)
    converted.ir_version = whole.ir_version
    assert converted == whole
    assert [n.op_type for n in converted.graph.node].count("Constant") > 2  # axes as inputs


def test_markers_that_do_not_come_back_convert_the_whole_model() -> None:
    """An adapter that dropped or changed a large tensor: the whole model is converted."""
    data = _old_model().SerializeToString()
    calls: list[int] = []

    def dropping(b: bytes, target: int) -> bytes:
        calls.append(len(b))
        out = onnx.ModelProto.FromString(opsets._convert_bytes(b, target))
        if len(calls) == 1:
            del out.graph.initializer[:]  # the marked MatMul weight gone
        return out.SerializeToString()

    got = skeleton.convert_model(data, 13, dropping)
    assert len(calls) == 2 and calls[1] == len(data)
    assert got == onnx.ModelProto.FromString(opsets._convert_bytes(data, 13))
