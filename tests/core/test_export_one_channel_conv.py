"""A Conv with one output channel stays float on the ort-cpu target (W8A8 export).

ONNX Runtime 1.31's QLinearConv ran 1.2x to 50x slower than its float Conv for single
output-channel convolutions (basic-pitch's CQT low-pass filters [1, 1, 1, 256] and its
[1, 32, 7, 3] / [1, 33, 3, 3] output heads made the whole int8 export 1.13x slower than
float), so the target neither quantizes such a Conv's output nor writes it as a QDQ group:
its weights are folded to the plan's values and it runs as a float Conv, with a note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core import plan_checks
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests import builders
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def narrow_conv_net(k: int = 3) -> onnx.ModelProto:
    """x[1,4,8,8] -> wide (Conv 8) -> Relu -> narrow (Conv 1, k x k) -> Relu -> last (Conv 4)
    -> y"""
    rng = np.random.default_rng(0)
    shapes = {"wide": (8, 4, 3, 3), "narrow": (1, 8, k, k), "last": (4, 1, 3, 3)}
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), f"{k}_w")
             for k, s in shapes.items()]  # fmt: skip
    nodes, t = [], "x"
    for i, k in enumerate(shapes):
        pads = [shapes[k][2] // 2] * 4
        nodes.append(helper.make_node("Conv", [t, f"{k}_w"], [f"{k}_c"], name=k, pads=pads))
        t = "y" if i == len(shapes) - 1 else f"{k}_r"
        if t != "y":
            nodes.append(helper.make_node("Relu", [f"{k}_c"], [t]))
        else:
            nodes[-1].output[0] = "y"
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in ("x", "y")]
    return builders.model(helper.make_graph(nodes, "narrow", io[:1], io[1:], inits))


def test_one_output_channel_conv_stays_float(tmp_path: Path) -> None:
    model = from_proto(narrow_conv_net())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    placed = engine.placement(plan)
    assert "wide_r" in placed  # the wide conv's output is requantized: QLinearConv
    assert "narrow_r" not in placed and "narrow_c" not in placed
    warnings = plan_checks.deployment_warnings(plan)
    assert [w for w in warnings if "'narrow'" in w and "one output channel" in w]
    result, report = run(engine, plan, tmp_path / "narrow.onnx")
    kernels = {la.name: la.kernel for la in report.layers}
    assert kernels["wide"] == "QLinearConv"
    assert "QLinear" not in kernels["narrow"] and "Integer" not in kernels["narrow"]
    assert not result.layers["narrow"].integer_kernel
    assert report.passed, report.failures


def test_one_output_channel_1x1_conv_is_an_integer_kernel(tmp_path: Path) -> None:
    # a detector's 1 x C x 1 x 1 objectness/class head: QLinearConv was faster there
    model = from_proto(narrow_conv_net(k=1))
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    assert "narrow_r" in engine.placement(plan)
    assert not [w for w in plan_checks.deployment_warnings(plan) if "'narrow'" in w]
    result, report = run(engine, plan, tmp_path / "narrow1x1.onnx")
    assert {la.name: la.kernel for la in report.layers}["narrow"] == "QLinearConv"
    assert result.layers["narrow"].integer_kernel
    assert report.passed, report.failures
