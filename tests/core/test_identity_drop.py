"""Identity nodes removed in memory as ONNX Runtime removes them
(bitlens.core.model.identity_drop): Paddle2ONNX's ``Add -> Identity -> Relu``."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.model.loader import from_proto
from tests import builders
from tests.core.test_bn_fold import _ort
from tests.core.w8a8_graph import w8a8_as_run


def identity_net() -> onnx.ModelProto:
    """x -> conv0 -> Add [1,8,1,1] -> Identity -> Relu -> conv1 -> Add [1,8,1,1] -> Identity
    -> Identity -> Relu -> conv2 -> Identity -> y, and conv1's input also read by an If's
    branch (its Identity there stays: the branch names it). Paddle2ONNX writes an Identity
    after every Add (tinyocr's PP-OCRv6 detector has 147)."""
    rng = np.random.default_rng(3)
    f32 = np.float32
    arrays = {
        "w0": rng.normal(0, 0.3, (8, 3, 3, 3)), "b0": rng.normal(0, 0.3, (1, 8, 1, 1)),
        "w1": rng.normal(0, 0.2, (8, 8, 3, 3)), "b1": rng.normal(0, 0.3, (1, 8, 1, 1)),
        "w2": rng.normal(0, 0.3, (4, 8, 1, 1)),
    }  # fmt: skip
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1] * 4),
        mk("Add", ["c0", "b0"], ["a0"]), mk("Identity", ["a0"], ["i0"]),
        mk("Relu", ["i0"], ["r0"]),
        mk("Conv", ["r0", "w1"], ["c1"], name="conv1", pads=[1] * 4),
        mk("Add", ["c1", "b1"], ["a1"]), mk("Identity", ["a1"], ["i1"]),
        mk("Identity", ["i1"], ["i2"]), mk("Relu", ["i2"], ["r1"]),
        mk("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        mk("Identity", ["c2"], ["y"]),  # a graph output: stays
    ]  # fmt: skip
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        nodes, "identities", [vi("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [vi("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(f32(v), k) for k, v in arrays.items()],
    )  # fmt: skip
    return builders.model(g, 13)


def test_identities_go_where_onnx_runtime_drops_them() -> None:
    proto = identity_net()
    model = from_proto(proto)
    kept = [n.output[0] for n in model.proto.graph.node if n.op_type == "Identity"]
    assert kept == ["y"]  # the graph output's
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 8, 8)).astype(np.float32)
    want = _ort(proto, x)
    assert np.abs(_ort(model.proto, x) - want).max() <= 1e-5 * np.abs(want).max()
    kept = from_proto(proto, fold_bn=False).proto.graph.node  # --keep-batchnorm: as the file
    assert sum(n.op_type == "Identity" for n in kept) == 4


def test_identity_read_by_a_branch_stays() -> None:
    """An If's branch reads the Identity's output by name: removing it would leave the
    branch reading a tensor nobody makes."""
    proto = identity_net()
    vi = helper.make_tensor_value_info
    branch = helper.make_graph(
        [helper.make_node("Relu", ["i0"], ["b_out"])], "branch", [],
        [vi("b_out", TensorProto.FLOAT, [1, 8, 8, 8])],
    )  # fmt: skip
    g = proto.graph
    g.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    g.node.append(helper.make_node(
        "If", ["cond"], ["z"], then_branch=branch, else_branch=branch, name="if0"
    ))  # fmt: skip
    g.output.append(vi("z", TensorProto.FLOAT, [1, 8, 8, 8]))
    model = from_proto(proto)
    kept = sorted(n.output[0] for n in model.proto.graph.node if n.op_type == "Identity")
    assert kept == ["i0", "y"]


def test_w8a8_requantizes_no_conv_output_twice(tmp_path: Path) -> None:
    """With the Identity between the folded bias and the Relu, the conv output was quantized
    before the Relu and the next conv's input again after it: ONNX Runtime ran a float
    DequantizeLinear -> QuantizeLinear between the QLinearConvs (PP-OCRv6's tiny detector:
    16 of them) and the activation was rounded twice."""
    opt = w8a8_as_run(identity_net(), (1, 3, 8, 8), tmp_path)
    ops = collections.Counter(n.op_type for n in opt.graph.node)
    assert ops["QLinearConv"] == 3, ops
    assert ops["QuantizeLinear"] == 1, ops  # the model input's only
