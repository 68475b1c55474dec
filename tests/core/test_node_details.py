"""Node properties for the graph's pane, and the find box's matching (no Qt)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.graph_find import find, findables
from bitlens.core.model.loader import from_proto
from bitlens.core.node_details import NodeIndex
from bitlens.core.plan import LayerChoice, Plan
from tests.builders import lstm_in_if, mlp, model, weights


def _fp16_gemm():
    """W16 (float16 in the file) -> Cast -> W;  x[2,8] -> Gemm(x, W, b, alpha=0.5) -> y[2,4]"""
    w = weights((4, 8), seed=3).astype(np.float16)
    b = np.arange(4, dtype=np.float32)
    nodes = [
        helper.make_node("Cast", ["W16"], ["W"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="fc", transB=1, alpha=0.5),
    ]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(w, "W16"), numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    return model(g), w, b


def test_details_weight_stats_against_numpy_and_stored_dtype() -> None:
    proto, w16, _b = _fp16_gemm()
    loaded = from_proto(proto)
    index = NodeIndex(loaded)
    cast = index.details("cast")
    assert cast.op_type == "Cast" and dict(cast.attributes) == {"to": str(TensorProto.FLOAT)}
    (ws,) = cast.weights
    ref = w16.astype(np.float64)
    assert ws.dtype == "float16" and ws.nbytes == w16.size * 2  # as stored, not widened
    assert (ws.min, ws.max) == (ref.min(), ref.max())
    assert np.isclose(ws.mean, ref.mean()) and np.isclose(ws.std, ref.std())
    fc = index.details("fc")
    assert dict(fc.attributes)["alpha"] == "0.5"
    assert [(v.name, v.shape, v.dtype) for v in fc.outputs] == [("y", (2, 4), "float32")]
    bias = next(s for s in fc.weights if s.name == "b")
    assert (bias.min, bias.max, bias.mean) == (0.0, 3.0, 1.5)


def test_details_small_constants_show_their_values_and_subgraphs_are_summarized() -> None:
    loaded = from_proto(lstm_in_if())
    index = NodeIndex(loaded)
    if_node = next(n for n in loaded.info.nodes if n.op_type == "If")
    d = index.details(if_node.name)
    attrs = dict(d.attributes)
    assert attrs["then_branch"].startswith("subgraph (") and "nodes)" in attrs["then_branch"]
    inner = next(n for n in loaded.info.nodes if n.graph_path and n.op_type == "LSTM")
    lstm = index.details(inner.name)
    assert lstm.graph_path == inner.graph_path and lstm.is_layer
    assert any(w.shape and len(w.shape) == 3 for w in lstm.weights)


def test_find_by_name_op_and_format() -> None:
    info = from_proto(mlp()).info  # fc1 (MatMul), fc1_bias (Add), relu, fc2, fc2_bias
    names = ["input:x", *(n.name for n in info.nodes), "output:y"]
    plan = Plan(info)
    items = findables(info, plan, names)
    assert find(items, "FC2") == ["fc2", "fc2_bias"]  # any case, part of the name
    assert find(items, "matmul") == ["fc1", "fc2"]
    assert find(items, "add bias") == ["fc1_bias", "fc2_bias"]  # every word must match
    assert find(items, "float") == ["fc1", "fc2"]  # layers kept in float
    assert find(items, "model input") == ["input:x"]
    assert find(items, "  ") == []
    plan = plan.with_choices({"fc2": LayerChoice.of("int4 sym ch", "uint8 asym", dynamic=True)})
    items = findables(info, plan, names)
    assert find(items, "int4") == find(items, "uint8 dynamic") == ["fc2"]
    assert find(items, "float") == ["fc1"]
