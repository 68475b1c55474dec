"""The latency model's rules (core/search/layer_cost.py), on small convnets built in code.

PP-OCRv6's tiny text detector is channels-poor (1x1 convolutions of 16-64 channels) with
depthwise blocks: the old model (MACs, x0.4 on an integer kernel) predicted W8A8 at 0.41x
the float time; ONNX Runtime ran it at 1.4x, and the default search locked layers to keep a
plan near a speed W8A8 never had. The rules here are shapes only, never timings.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx
import pytest
from onnx import helper

from bitlens.core.plan import Plan
from bitlens.core.search.latency import (
    NotSteered,
    Speed,
    freeing_order,
    layer_costs,
    layer_macs,
    speed_limit,
)
from bitlens.core.search.layer_cost import (
    BOUNDARY_COST,
    DEPTHWISE_FLOAT,
    DEPTHWISE_INTEGER,
    INTEGER_COST,
    depthwise,
    output_elements,
)
from bitlens.core.search.options import HALF_W8A8
from tests.builders import FLOAT, bias, init, model, weights
from tests.core.test_search import _engine


def pointwise_net(
    channels: int, side: int, dw: bool = False, names: Sequence[str] = (), kernel: int = 3
) -> onnx.ModelProto:
    """x[N,C,S,S] -> Conv(p0: CxCx1x1) -> Relu -> Conv(p1) -> Relu -> Conv(p2) -> Relu
    -> Conv(p3) -> y; with ``dw``, Conv(dw: Cx1x3x3, group C) -> Relu between p1 and p2.
    ``names``: these layers instead, in order, those named dw... depthwise (``kernel``)."""
    names = names or (["p0", "p1", "dw", "p2", "p3"] if dw else ["p0", "p1", "p2", "p3"])
    nodes, inits, prev = [], [], "x"
    for i, n in enumerate(names):
        depthwise = n.startswith("dw")
        shape = (channels, 1, kernel, kernel) if depthwise else (channels, channels, 1, 1)
        extra = {"group": channels, "pads": [kernel // 2] * 4} if depthwise else {}
        out = "y" if n == names[-1] else f"{n}.out"
        nodes.append(helper.make_node("Conv", [prev, f"{n}.w", f"{n}.b"], [out], name=n, **extra))
        inits += [
            init(f"{n}.w", weights(shape, seed=2 * i + 1)),
            init(f"{n}.b", bias(channels, seed=2 * i + 2)),
        ]
        if out != "y":
            nodes.append(helper.make_node("Relu", [out], [f"{n}.r"], name=f"{n}.relu"))
            prev = f"{n}.r"
    g = helper.make_graph(
        nodes,
        "pointwise_net",
        [helper.make_tensor_value_info("x", FLOAT, ["N", channels, side, side])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", channels, side, side])],
        inits,
    )
    return model(g)


def _speed(proto: onnx.ModelProto):
    engine = _engine(proto)
    w8a8 = Plan.preset(engine.info, "W8A8")
    macs = layer_macs(engine)
    return engine, speed_limit(engine, w8a8, HALF_W8A8, dict.fromkeys(macs, True)), macs


def test_costs_follow_the_layer_shapes() -> None:
    """A 1x1 convolution's output elements are its MACs over its input channels; a depthwise
    one's over its 3x3 window; the depthwise kernel costs more on QLinearConv than in float."""
    engine = _engine(pointwise_net(16, 8, dw=True))
    macs = layer_macs(engine)
    assert macs["p1"] == 16 * 16 * 64 and macs["dw"] == 16 * 9 * 64
    p1, dw = (engine.info.layer(n) for n in ("p1", "dw"))
    assert not depthwise(p1) and depthwise(dw)
    assert output_elements(p1, macs["p1"]) == output_elements(dw, macs["dw"]) == 16 * 64
    costs = layer_costs(engine, macs)
    assert costs["p1"].float == macs["p1"] and costs["p1"].kernel == INTEGER_COST * macs["p1"]
    assert costs["dw"].float == DEPTHWISE_FLOAT * macs["dw"]
    assert costs["dw"].kernel == DEPTHWISE_INTEGER * macs["dw"] and costs["dw"].saved < 0
    assert costs["p1"].boundary == costs["dw"].boundary == BOUNDARY_COST * 16 * 64


def test_channels_poor_models_are_not_steered() -> None:
    """16 channels: 16 MACs per output element save less than the quantize work around them
    costs, so W8A8 is predicted slower than float (4 x 1.05M MACs, above MIN_MACS) and the
    search locks nothing. 128 channels at the same MACs: W8A8 predicted faster, steered."""
    _e, poor, macs = _speed(pointwise_net(16, 64))
    assert sum(macs.values()) == 4 * 16 * 16 * 64 * 64
    assert isinstance(poor, NotSteered) and poor.w8a8 > 1.0
    _e, rich, macs = _speed(pointwise_net(128, 8))
    assert sum(macs.values()) == 4 * 128 * 128 * 64
    assert isinstance(rich, Speed)
    # p3 writes the graph's output, not an 8-bit one: a float Conv (core/export/kernels.py)
    assert rich.kernels == {"p0", "p1", "p2"}
    expected = (3 * INTEGER_COST + 1 + 3 * BOUNDARY_COST / 128) / 4
    assert rich.w8a8 == pytest.approx(expected) and rich.w8a8 < 1.0
    assert rich.limit == pytest.approx((expected + 1) / 2) and rich.locked


def test_a_depthwise_kernel_is_freed_first() -> None:
    """Its integer kernel saves no time: the default limit never locks it, and a size budget
    frees it before any layer whose kernel saves time."""
    engine, speed, _macs = _speed(pointwise_net(128, 8, dw=True))
    assert isinstance(speed, Speed) and "dw" in speed.kernels
    assert "dw" not in speed.locked
    everything = speed.__class__(speed.costs, speed.limit, speed.w8a8, speed.kernels, speed.kernels)
    assert freeing_order(engine, everything)[0] == "dw"
    # freeing it alone makes the plan faster than W8A8 itself
    assert speed.predict(speed.kernels - {"dw"}) < speed.w8a8
