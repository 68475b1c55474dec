"""A model's size sized a node and a tensor at a time (core/model/proto_size.py) equals
protobuf's own ``ByteSize``, and the loaded model's size no longer asks the whole model or
graph in one call: that one call held the interpreter lock 20-28 ms in the window's open
job on PP-OCRv4 rec (docs/benchmarks.md "opengil (session 15)").

    x -> Conv(W) -> Relu -> If(c: then Identity, else Neg; nested If in then) -> y
    + a model-local function, metadata, a doc string over 127 bytes, 300 small initializers
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.model.loader import load_model
from bitlens.core.model.proto_size import byte_size


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    small = [numpy_helper.from_array(np.full((3,), i, np.float32), f"s{i}") for i in range(300)]
    inner = helper.make_graph(
        [helper.make_node("Identity", ["r"], ["t2"])], "inner", [],
        [helper.make_tensor_value_info("t2", TensorProto.FLOAT, None)],
    )  # fmt: skip
    then = helper.make_graph(
        [helper.make_node("If", ["c"], ["t"], then_branch=inner, else_branch=inner)],
        "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
    )  # fmt: skip
    other = helper.make_graph(
        [helper.make_node("Neg", ["r"], ["e"])], "else", [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["h"], pads=[1, 1, 1, 1], doc_string="d" * 300),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="if"),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [w, numpy_helper.from_array(np.array(True), "c"), *small],
        doc_string="graph " * 40,
    )  # fmt: skip
    fn = helper.make_function(
        "local", "Twice", ["a"], ["b"], [helper.make_node("Add", ["a", "a"], ["b"])],
        [helper.make_opsetid("", 17)],
    )  # fmt: skip
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
        functions=[fn], producer_name="test", doc_string="m" * 200,
    )  # fmt: skip
    helper.set_model_props(model, {"k": "v" * 150})
    return model


def test_sizes_equal_protobufs_own() -> None:
    model = _model()
    assert byte_size(model) == model.ByteSize()
    assert byte_size(model.graph) == model.graph.ByteSize()
    assert byte_size(model.graph.node[2]) == model.graph.node[2].ByteSize()
    assert (
        byte_size(model.graph.node[2].attribute[0]) == model.graph.node[2].attribute[0].ByteSize()
    )
    assert byte_size(onnx.ModelProto()) == 0
    # a field this protobuf does not know (from a newer schema) is kept and counted
    unknown = onnx.ModelProto()
    unknown.ParseFromString(model.SerializeToString() + b"\xf8\x07\x05")  # field 127, varint 5
    assert unknown.ByteSize() == model.ByteSize() + 3
    assert byte_size(unknown) == unknown.ByteSize()


def test_loaded_models_size_asks_no_whole_model_or_graph(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    model = load_model(path)
    whole: list[str] = []

    def hook(_frame, event, arg) -> None:
        if event != "c_call" or getattr(arg, "__name__", "") != "ByteSize":
            return
        owner = getattr(arg, "__self__", None)  # a graph with nodes, a model with a graph
        if isinstance(owner, onnx.GraphProto) and len(owner.node):
            whole.append("GraphProto")
        elif isinstance(owner, onnx.ModelProto) and owner.HasField("graph"):
            whole.append("ModelProto")

    sys.setprofile(hook)
    try:
        size = model.nbytes
    finally:
        sys.setprofile(None)
    assert whole == []  # the old code: ['ModelProto']
    assert size == model.graph_proto.ByteSize()  # no external data, nothing detached here
