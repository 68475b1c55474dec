"""Whole-graph protobuf passes of an export build, made a node at a time
(core/export/sizing.py ``graph_proto_bytes``, core/export/editing.py ``set_nodes``,
core/export/piecewise.py ``write``): upb
encodes or copies a whole graph in one call with the interpreter lock held (25-30 ms each on
PP-OCRv4 rec, several per build, dozens of builds per plan search), which the window waits
for. The numbers and graphs must be those of the one-call passes.
"""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.export import piecewise
from bitlens.core.export.editing import NODES_PER_COPY, set_nodes
from bitlens.core.export.sizing import graph_proto_bytes


def _graph() -> onnx.GraphProto:
    """Every kind of GraphProto field, and a node over 16 KiB (a 3-byte length varint)."""
    big = np.arange(5000, dtype=np.float32).reshape(50, 100)
    branch = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["b"])], "branch", [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [50, 100])],
    )  # fmt: skip
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(big, "c")),
        helper.make_node("Add", ["x", "c"], ["a"], name="add", doc_string="a node"),
        helper.make_node("If", ["flag"], ["y"], then_branch=branch, else_branch=branch),
    ]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [50, 100])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [50, 100])],
        [numpy_helper.from_array(np.array(True), "flag"),
         numpy_helper.from_array(np.ones(300, np.float32), "w")],
        doc_string="the graph",
        value_info=[helper.make_tensor_value_info("a", TensorProto.FLOAT, [50, 100])],
    )  # fmt: skip
    sparse = g.sparse_initializer.add()
    sparse.values.CopyFrom(numpy_helper.from_array(np.ones(2, np.float32), "s"))
    sparse.indices.CopyFrom(numpy_helper.from_array(np.array([0, 3], np.int64), "s_i"))
    sparse.dims.append(8)
    return g


def test_graph_bytes_in_parts_are_bytesize() -> None:
    g = _graph()
    assert graph_proto_bytes(g) == g.ByteSize()
    many = onnx.GraphProto()
    many.CopyFrom(g)
    for i in range(200):  # a 2-byte length prefix on the graph's own fields too
        many.node.append(helper.make_node("Relu", [f"r{i}"], [f"r{i + 1}"]))
    assert graph_proto_bytes(many) == many.ByteSize()
    # a field this onnx does not know (a newer writer's): counted as ByteSize counts it
    unknown = onnx.GraphProto.FromString(g.SerializeToString() + b"\xa2\x06\x03abc")  # field 100
    assert graph_proto_bytes(unknown) == unknown.ByteSize() == g.ByteSize() + 6


def test_set_nodes_copies_them_all_in_order() -> None:
    g = _graph()
    for i in range(3 * NODES_PER_COPY + 5):
        g.node.append(helper.make_node("Relu", [f"r{i}"], [f"r{i + 1}"]))
    want = [n.SerializeToString() for n in reversed(g.node)]
    set_nodes(g, list(reversed(g.node)))
    assert [n.SerializeToString() for n in g.node] == want


def test_a_model_written_a_node_at_a_time_parses_and_runs_as_the_model(tmp_path) -> None:
    g = _graph()
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model.doc_string = "fields after the graph too"
    helper.set_model_props(model, {"k": "v"})
    out = io.BytesIO()
    piecewise.write(model, out)
    assert out.getvalue() != model.SerializeToString()  # the graph in several fields
    assert onnx.ModelProto.FromString(out.getvalue()) == model
    path = tmp_path / "m.onnx"
    path.write_bytes(out.getvalue())
    x = {"x": np.random.default_rng(1).standard_normal((50, 100)).astype(np.float32)}
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, x)
    want = ort.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    ).run(None, x)
    assert np.array_equal(got[0], want[0])
    # unknown fields: written by the one call, which keeps them
    unknown = onnx.ModelProto.FromString(model.SerializeToString() + b"\xa2\x06\x03abc")
    out = io.BytesIO()
    piecewise.write(unknown, out)
    assert out.getvalue() == unknown.SerializeToString()


def test_a_model_serialized_in_pieces_is_serializetostring_byte_for_byte() -> None:
    model = helper.make_model(
        _graph(), opset_imports=[helper.make_opsetid("", 17)], ir_version=8,
        producer_name="p", doc_string="field 6, before the graph",
    )  # fmt: skip
    helper.set_model_props(model, {"k": "v"})  # field 14, after it
    model.functions.append(helper.make_function("f", "fn", ["a"], ["b"], [
        helper.make_node("Identity", ["a"], ["b"])], [helper.make_opsetid("", 17)]))
    assert piecewise.serialized(model) == model.SerializeToString()
    nameless = onnx.ModelProto()
    nameless.CopyFrom(model)
    nameless.graph.ClearField("name")
    assert piecewise.serialized(nameless) == nameless.SerializeToString()
    unknown = onnx.ModelProto.FromString(model.SerializeToString() + b"\xa2\x06\x03abc")
    assert piecewise.serialized(unknown) == unknown.SerializeToString()
