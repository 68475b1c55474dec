"""The inventory of every shared builder: layers, axes, storage, subgraphs, edges, I/O."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from bitlens.core.model import from_proto
from bitlens.core.model.inventory import build_inventory
from bitlens.core.model.types import Edge, Storage, TensorInfo
from tests import builders as b

INIT, CONST = Storage.INITIALIZER, Storage.CONSTANT

# builder -> [(layer, op, graph_path, [(weight, shape, storage, weight graph_path, ch, blk)],
#             [biases], (activations))]
EXPECTED = {
    "conv_net": [
        ("conv1", "Conv", "", [("conv1.w", (8, 3, 3, 3), INIT, "", 0, 1)], ["conv1.b"], ("x",)),
        ("conv2", "Conv", "", [("conv2.w", (16, 8, 3, 3), INIT, "", 0, 1)], ["conv2.b"], ("r1",)),
        ("fc", "Gemm", "", [("fc.w", (10, 16), INIT, "", 0, 1)], ["fc.b"], ("flat",)),
    ],
    "mlp": [
        # the constant of the Add after a MatMul is the linear layer's bias (add_bias.py)
        ("fc1", "MatMul", "", [("fc1.w", (16, 32), INIT, "", 1, 0)], ["fc1.b"], ("x",)),
        ("fc2", "MatMul", "", [("fc2.w", (32, 8), INIT, "", 1, 0)], ["fc2.b"], ("r1",)),
    ],
    "embedding_model": [
        ("embed", "Gather", "", [("embed.w", (50, 16), INIT, "", 0, 1)], [], ()),
        ("proj", "MatMul", "", [("proj.w", (16, 8), INIT, "", 1, 0)], [], ("e",)),
    ],
    "opset12_constant_weights": [
        ("Conv_2", "Conv", "", [("w1", (6, 3, 3, 3), CONST, "", 0, 1)], ["b1"], ("x",)),
        ("Gemm_7", "Gemm", "", [("w2", (4, 216), CONST, "", 0, 1)], ["b2"], ("f",)),
    ],
    "lstm_in_if": [
        (
            "else_lstm",
            "LSTM",
            "choose/else_branch",
            [("else.W", (1, 24, 8), INIT, "", 1, 2), ("else.R", (1, 24, 6), INIT, "", 1, 2)],
            ["else.B"],
            ("x",),
        ),
        (
            "then_lstm",
            "LSTM",
            "choose/then_branch",
            [
                ("then.W", (1, 24, 8), INIT, "choose/then_branch", 1, 2),
                ("then.R", (1, 24, 6), INIT, "choose/then_branch", 1, 2),
            ],
            ["then.B"],
            ("x",),
        ),
    ],
    "loop_with_matmul": [
        (
            "body_fc",
            "MatMul",
            "loop/body",
            [("body.w", (8, 8), INIT, "loop/body", 1, 0)],
            [],
            ("h_in",),
        ),
        ("head", "MatMul", "", [("head.w", (8, 4), INIT, "", 1, 0)], [], ("y",)),
    ],
    "fp64_gemm": [("dense", "Gemm", "", [("w", (8, 4), INIT, "", 1, 0)], ["b"], ("x",))],
    "nhwc_conv": [
        ("conv", "Conv", "", [("conv.w", (4, 3, 3, 3), INIT, "", 0, 1)], ["conv.b"], ("xt",))
    ],
    "dynamic_batch_mlp": [
        ("fc1", "MatMul", "", [("fc1.w", (16, 24), INIT, "", 1, 0)], ["fc1.b"], ("x",)),
        ("fc2", "Gemm", "", [("fc2.w", (4, 24), INIT, "", 0, 1)], ["fc2.b"], ("r",)),
    ],
    "stateful_gru": [
        (
            "gru",
            "GRU",
            "",
            [("gru.W", (1, 12, 5), INIT, "", 1, 2), ("gru.R", (1, 12, 4), INIT, "", 1, 2)],
            ["gru.B"],
            ("x",),
        ),
    ],
    "multi_input": [
        ("conv", "Conv", "", [("conv.w", (4, 3, 1, 1), INIT, "", 0, 1)], [], ("image",)),
        ("head", "Gemm", "", [("head.w", (3, 10), INIT, "", 0, 1)], ["head.b"], ("cat",)),
    ],
}


@pytest.mark.parametrize("name", sorted(b.ALL_BUILDERS))
def test_builder_is_valid_and_runs(name: str) -> None:
    m = b.ALL_BUILDERS[name]()
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, b.random_feeds(m))
    assert all(np.isfinite(o).all() for o in outs)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_layers_of_every_builder(name: str) -> None:
    lm = from_proto(b.ALL_BUILDERS[name]())
    got = [
        (
            layer.name,
            layer.op_type,
            layer.graph_path,
            [
                (w.name, w.shape, w.storage, w.graph_path, w.channel_axis, w.block_axis)
                for w in layer.weights
            ],
            [x.name for x in layer.biases],
            layer.activations,
        )
        for layer in lm.info.layers
    ]
    assert got == EXPECTED[name]
    for layer in lm.info.layers:
        node = next(n for n in lm.info.nodes if n.name == layer.name)
        assert node.is_layer and node.graph_path == layer.graph_path
        assert lm.info.nodes[layer.index] == node
        assert layer.params == sum(int(np.prod(w.shape)) for w in layer.weights)
        for w in (*layer.weights, *layer.biases):
            values = lm.weight(w)
            assert values.shape == w.shape
            assert layer.nbytes == sum(
                lm.weight(x).size * np.dtype(x.dtype).itemsize for x in layer.weights
            )


def test_weights_equal_the_stored_values() -> None:
    """Constant-node values (tensor and value_floats) come back exactly."""
    m = b.opset12_constant_weights()
    lm = from_proto(m)
    by_out = {n.output[0]: n for n in m.graph.node if n.op_type == "Constant"}
    np.testing.assert_array_equal(
        lm.weight("w1"), numpy_helper.to_array(by_out["w1"].attribute[0].t)
    )
    np.testing.assert_array_equal(
        lm.weight("b1"), np.asarray(by_out["b1"].attribute[0].floats, np.float32)
    )


def test_fp64_weights_stay_fp64() -> None:
    lm = from_proto(b.fp64_gemm())
    w = lm.info.layers[0].weights[0]
    assert w.dtype == "float64" and w.nbytes == 8 * 4 * 8
    assert lm.weight(w).dtype == np.float64


def test_subgraph_weights_by_path() -> None:
    lm = from_proto(b.lstm_in_if())
    assert [(n.name, n.graph_path) for n in lm.info.nodes] == [
        ("choose", ""),
        ("else_lstm", "choose/else_branch"),
        ("then_lstm", "choose/then_branch"),
    ]
    assert lm.weight("then.W", "choose/then_branch").shape == (1, 24, 8)
    assert lm.weight("else.W").shape == (1, 24, 8)  # outer-scope initializer, main graph
    # the If reads x for its branches: the main graph shows that dependency
    assert Edge("input:x", "choose", "x") in lm.info.edges
    assert Edge("input:x", "then_lstm", "x") in lm.info.edges


def test_edges_and_io() -> None:
    info = from_proto(b.multi_input()).info
    assert info.edges == (
        Edge("input:image", "conv", "image"),
        Edge("conv", "pool", "c"),
        Edge("pool", "flatten", "p"),
        Edge("flatten", "concat", "f"),
        Edge("input:features", "concat", "features"),
        Edge("concat", "head", "cat"),
        Edge("head", "output:y", "y"),
    )
    assert info.inputs == (
        TensorInfo("image", (1, 3, 4, 4), "float32"),
        TensorInfo("features", (1, 6), "float32"),
    )
    assert info.outputs == (TensorInfo("y", (1, 3), "float32"),)
    assert info.value_info["cat"] == TensorInfo("cat", (1, 10), "float32")
    assert info.opset == 17 and info.ir_version == 8 and info.producer == "bitlens-tests"


def test_symbolic_dims_and_stateful_io() -> None:
    info = from_proto(b.dynamic_batch_mlp()).info
    assert info.inputs[0].shape == ("batch", 16)
    assert info.value_info["r"].shape == ("batch", 24)  # from shape inference
    gru = from_proto(b.stateful_gru()).info
    assert [t.name for t in gru.inputs] == ["x", "h0"]
    assert [t.name for t in gru.outputs] == ["y", "h_out"]
    assert Edge("input:h0", "gru", "h0") in gru.edges
    assert Edge("gru", "output:h_out", "h_out") in gru.edges


def test_unsorted_graph_is_sorted_and_unnamed_nodes_named() -> None:
    m = b.conv_net()
    nodes = list(m.graph.node)
    nodes.reverse()
    for n in nodes:
        n.name = ""
    nodes[0].name = "dup"
    nodes[1].name = "dup"
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    lm = from_proto(m)
    names = [n.name for n in lm.info.nodes]
    assert [n.op_type for n in lm.info.nodes] == [
        "Conv",
        "Relu",
        "Conv",
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
    ]
    # the first "dup" in topological order (the Flatten) keeps it, the Gemm is renamed
    assert names == ["Conv_0", "Relu_1", "Conv_2", "GlobalAveragePool_3", "dup", "Gemm_5"]
    assert [n.name for n in lm.proto.graph.node] == names  # the proto carries the same names
    onnx.checker.check_model(lm.proto)
    # build_inventory on the unsorted proto agrees without changing it
    info = build_inventory(m)
    assert [n.name for n in info.nodes] == names
    assert m.graph.node[0].op_type == "Gemm"


def test_old_ir_initializers_listed_as_inputs_are_not_inputs() -> None:
    m = b.mlp()
    for t in m.graph.initializer:
        m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    m.ir_version = 3
    m.opset_import[0].version = 9
    info = from_proto(m).info
    assert [t.name for t in info.inputs] == ["x"]
    assert [layer.name for layer in info.layers] == ["fc1", "fc2"]


def test_constant_through_cast_or_transpose_is_not_a_layer() -> None:
    """Weights reached through Cast/Transpose are not followed (documented limitation)."""
    w = b.weights((8, 4), seed=5, fan_in=8, channel_axis=1)
    nodes = [
        helper.make_node("Cast", ["w16"], ["w"], to=onnx.TensorProto.FLOAT, name="cast"),
        helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
    ]
    g = helper.make_graph(
        nodes,
        "cast",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(w.astype(np.float16), "w16")],
    )
    assert from_proto(b.model(g)).info.layers == ()


def test_integer_and_fully_constant_matmuls_are_not_layers() -> None:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.INT32, [2, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [2, 3])
    z = helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [2, 2])
    nodes = [
        helper.make_node("MatMul", ["x", "wi"], ["y"], name="int_mm"),
        helper.make_node("MatMul", ["a", "c"], ["z"], name="const_mm"),
    ]
    inits = [
        numpy_helper.from_array(np.eye(3, dtype=np.int32), "wi"),
        numpy_helper.from_array(np.ones((2, 3), np.float32), "a"),
        numpy_helper.from_array(np.ones((3, 2), np.float32), "c"),
    ]
    g = helper.make_graph(nodes, "ints", [x], [y, z], inits)
    info = from_proto(b.model(g)).info
    assert info.layers == ()
    # the fully constant MatMul is folded into the initializer "z" at load
    assert [(n.name, n.is_layer) for n in info.nodes] == [("int_mm", False)]


def test_transposed_operands_and_weight_first_matmul() -> None:
    """Gemm with transA/constant A, MatMul(W, x), ConvTranspose and an RNN."""
    f = onnx.TensorProto.FLOAT
    nodes = [
        helper.make_node("Gemm", ["a", "x"], ["g"], name="gemm_a", transA=1),
        helper.make_node("MatMul", ["wm", "g"], ["m"], name="mm_left"),
        helper.make_node("Reshape", ["m", "shape"], ["r"], name="reshape"),
        helper.make_node("ConvTranspose", ["r", "wt"], ["ct"], name="deconv"),
        helper.make_node("Reshape", ["ct", "seq_shape"], ["s"], name="to_seq"),
        helper.make_node("RNN", ["s", "rw", "rr"], ["", "h"], name="rnn", hidden_size=3),
    ]
    inits = [
        numpy_helper.from_array(b.weights((8, 5), seed=1, channel_axis=1), "a"),  # A^T: [K=8, M=5]
        numpy_helper.from_array(b.weights((6, 5), seed=2), "wm"),  # [M=6, K=5]
        numpy_helper.from_array(np.array([1, 6, 2, 2], np.int64), "shape"),
        numpy_helper.from_array(b.weights((6, 2, 3, 3), seed=3, channel_axis=1), "wt"),
        numpy_helper.from_array(np.array([2, 1, 16], np.int64), "seq_shape"),
        numpy_helper.from_array(b.weights((1, 3, 16), seed=4, channel_axis=1), "rw"),
        numpy_helper.from_array(b.weights((1, 3, 3), seed=5, channel_axis=1), "rr"),
    ]
    g = helper.make_graph(
        nodes,
        "mixed",
        [helper.make_tensor_value_info("x", f, [8, 4])],
        [helper.make_tensor_value_info("h", f, [1, 1, 3])],
        inits,
    )
    m = b.model(g)
    ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ones((8, 4), np.float32)}
    )
    layers = {layer.name: layer for layer in from_proto(m).info.layers}
    axes = {
        n: [(w.name, w.channel_axis, w.block_axis) for w in layer.weights]
        for n, layer in layers.items()
    }
    assert axes == {
        "gemm_a": [("a", 1, 0)],
        "mm_left": [("wm", 0, 1)],
        "deconv": [("wt", 1, 0)],
        "rnn": [("rw", 1, 2), ("rr", 1, 2)],
    }
    assert layers["gemm_a"].activations == ("x",)
    assert layers["mm_left"].activations == ("g",)


def test_layer_inside_nested_subgraph_reads_outer_constant_node() -> None:
    """A Constant node in the main graph feeding a Conv inside an If (Constant -> Conv)."""
    f = onnx.TensorProto.FLOAT
    w = b.weights((2, 1, 3, 3), seed=9)
    conv = helper.make_node("Conv", ["x", "cw"], ["c"], name="inner_conv", pads=[1] * 4)
    then_g = helper.make_graph(
        [conv], "then", [], [helper.make_tensor_value_info("c", f, [1, 2, 4, 4])]
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e"], name="passthrough")],
        "else",
        [],
        [helper.make_tensor_value_info("e", f, [1, 1, 4, 4])],
    )
    nodes = [
        helper.make_node("Constant", [], ["cw"], value=numpy_helper.from_array(w, "cw")),
        helper.make_node("If", ["cond"], ["out"], then_branch=then_g, else_branch=else_g),
    ]
    g = helper.make_graph(
        nodes,
        "nested",
        [
            helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", f, [1, 1, 4, 4]),
        ],
        [helper.make_tensor_value_info("out", f, [1, None, 4, 4])],
    )
    m = b.model(g)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.ones((1, 1, 4, 4), np.float32)
    assert sess.run(None, {"cond": np.array(True), "x": x})[0].shape == (1, 2, 4, 4)
    lm = from_proto(m)
    (layer,) = lm.info.layers
    assert layer.name == "inner_conv" and layer.graph_path == "If_1/then_branch"
    (wi,) = layer.weights
    assert (wi.name, wi.storage, wi.graph_path) == ("cw", CONST, "")
    np.testing.assert_array_equal(lm.weight(wi), w)
    assert Edge("Constant_0", "inner_conv", "cw") in lm.info.edges
    assert Edge("Constant_0", "If_1", "cw") in lm.info.edges


def test_shape_inference_runs_on_a_skeleton_without_large_weights() -> None:
    from bitlens.core.model.shapes import infer_value_info, skeleton

    m = b.conv_net()
    sk = skeleton(m)
    stripped = {t.name: t for t in sk.graph.initializer}
    assert not stripped["conv2.w"].raw_data and list(stripped["conv2.w"].dims) == [16, 8, 3, 3]
    assert stripped["conv1.w"].raw_data  # small tensors keep their data
    assert len(sk.SerializeToString()) < len(m.SerializeToString()) - 4000
    info = infer_value_info(m)
    assert info["c2"] == TensorInfo("c2", (1, 16, 8, 8), "float32")
    assert info["flat"] == TensorInfo("flat", (1, 16), "float32")
    # inside subgraphs too
    loop = infer_value_info(b.loop_with_matmul())
    assert loop["m"].shape == (1, 8)
