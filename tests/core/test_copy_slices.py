"""The simulation graph's copy of the model (``rewrite.copy_without_weights``) copies long
repeated fields in slices, so no one protobuf call holds the interpreter lock for the whole
node list (12-15 ms on PP-OCRv4 rec's 860 nodes in the window's open job, more on larger
graphs: docs/benchmarks.md "opengil (session 15)"), and the copy is the same.

    x -> Conv(W) -> Relu x 3000 -> y
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import rewrite
from bitlens.core.model import proto_copy
from bitlens.core.model.loader import load_model

NODES = 3000


def _model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "W")
    b = numpy_helper.from_array(np.zeros((4,), np.float32), "unused")
    nodes = [helper.make_node("Conv", ["x", "W"], ["t0"])]
    nodes += [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(NODES)]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info(f"t{NODES}", TensorProto.FLOAT, [1, 4, 4, 4])],
        [w, b],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_copy_without_weights_copies_in_slices_and_the_same(tmp_path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_model(), path)
    loaded = load_model(path)
    proto = loaded.graph_proto
    extends = [0]

    def hook(_frame, event, arg) -> None:
        if event == "c_call" and getattr(arg, "__name__", "") == "extend":
            extends[0] += 1

    sys.setprofile(hook)
    try:
        copy, left_out = rewrite.copy_without_weights(proto, loaded.info)
    finally:
        sys.setprofile(None)
    slices = -(-len(proto.graph.node) // proto_copy.COPY_SLICE)
    assert len(proto.graph.node) > NODES and slices >= 12
    assert extends[0] >= slices  # the old code: one extend per field, 6 in all
    # the same as a whole copy less the weights left out
    whole = onnx.ModelProto()
    whole.CopyFrom(proto)
    kept = [t for t in whole.graph.initializer if t.name not in left_out]
    del whole.graph.initializer[:]
    whole.graph.initializer.extend(kept)
    assert left_out == {"W"}
    assert copy.SerializeToString() == whole.SerializeToString()
