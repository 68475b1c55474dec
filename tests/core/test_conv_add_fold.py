"""Folding an Add of a per-channel constant after a bias-free Conv into the Conv's bias
(bitlens.core.model.conv_add_fold): Paddle2ONNX's Conv + Add(bias) pairs."""

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

SQRT2 = float(np.sqrt(2.0))


def conv_add_net() -> onnx.ModelProto:
    """x -> conv0 -> Add [1,8,1,1] -> Relu -> conv1 (strided) -> Add [6,1,1] -> conv2 ->
    Add [1,4,1,1] -> GELU (x * 0.5 * (1 + Erf(x / sqrt 2))) -> conv3 -> Add [1,2,3,3] -> y.
    The first two Adds fold; the third feeds a GELU and stays (its float output keeps
    ONNX Runtime's Gelu fusion); the fourth's constant is not one value per channel."""
    rng = np.random.default_rng(7)
    f32 = np.float32
    arrays = {
        "w0": rng.normal(0, 0.3, (8, 3, 3, 3)), "b0": rng.normal(0, 0.3, (1, 8, 1, 1)),
        "w1": rng.normal(0, 0.2, (6, 8, 3, 3)), "b1": rng.normal(0, 0.3, (6, 1, 1)),
        "w2": rng.normal(0, 0.3, (4, 6, 1, 1)), "b2": rng.normal(0, 0.3, (1, 4, 1, 1)),
        "w3": rng.normal(0, 0.3, (2, 4, 1, 1)), "b3": rng.normal(0, 0.3, (1, 2, 3, 3)),
        "sqrt2": np.array(SQRT2), "one": np.array(1.0), "half": np.array(0.5),
    }  # fmt: skip
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1] * 4),
        mk("Add", ["c0", "b0"], ["a0"]), mk("Relu", ["a0"], ["r0"]),
        mk("Conv", ["r0", "w1"], ["c1"], name="conv1", pads=[1] * 4, strides=[2, 2]),
        mk("Add", ["b1", "c1"], ["a1"]),  # the constant first
        mk("Conv", ["a1", "w2"], ["c2"], name="conv2"),
        mk("Add", ["c2", "b2"], ["g"]),
        mk("Div", ["g", "sqrt2"], ["gd"]), mk("Erf", ["gd"], ["ge"]),
        mk("Add", ["ge", "one"], ["gp"]), mk("Mul", ["g", "gp"], ["gm"]),
        mk("Mul", ["gm", "half"], ["h"]),
        mk("Conv", ["h", "w3"], ["c3"], name="conv3"),
        mk("Add", ["c3", "b3"], ["y"]),
    ]  # fmt: skip
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        nodes, "conv_add", [vi("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [vi("y", TensorProto.FLOAT, [1, 2, 3, 3])],
        [numpy_helper.from_array(f32(v), k) for k, v in arrays.items()],
    )  # fmt: skip
    return builders.model(g, 13)


def test_per_channel_adds_fold_into_the_conv_bias() -> None:
    proto = conv_add_net()
    model = from_proto(proto)
    assert model.add_folded == 2
    assert any(n.startswith("2 Add(s) of a per-channel constant folded") for n in model.info.notes)
    layers = {la.name: la for la in model.info.layers}
    assert [len(layers[n].biases) for n in ("conv0", "conv1", "conv2", "conv3")] == [1, 1, 0, 0]
    adds = [n for n in model.proto.graph.node if n.op_type == "Add"]
    assert sorted(a.input[1] for a in adds) == ["b2", "b3", "one"]  # the GELU's, the spatial
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 6, 6)).astype(np.float32)
    want = _ort(proto, x)
    assert np.abs(_ort(model.proto, x) - want).max() <= 1e-5 * np.abs(want).max()
    assert from_proto(proto, fold_bn=False).add_folded == 0  # --keep-batchnorm keeps them


def test_w8a8_runs_no_float_bias_add(tmp_path: Path) -> None:
    """Before the fold the conv output's quantizer sat between Conv and Add: ONNX Runtime ran
    DequantizeLinear -> Add -> QuantizeLinear in float after conv0 and conv1, and conv0's
    Relu after its quantizer."""
    opt = w8a8_as_run(conv_add_net(), (1, 3, 6, 6), tmp_path)
    ops = collections.Counter(n.op_type for n in opt.graph.node)
    assert ops["QLinearConv"] == 4 and ops["Relu"] == 0, ops
    assert ops["Gelu"] == 1, ops  # the unfolded Add's float output still fuses
    float_adds = [n for n in opt.graph.node if n.op_type == "Add"]
    assert len(float_adds) == 2, ops  # the GELU's bias Add and the spatial one only
