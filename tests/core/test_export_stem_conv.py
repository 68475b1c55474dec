"""An image's stem convolution (few input channels, a 3 x 3 kernel) stays float on the
ort-cpu target (bitlens.core.slow_kernels): ONNX Runtime 1.31's QLinearConv ran 2-9x slower
than its float Conv there (3 -> 16 channels, 3 x 3, stride 2 at 384x512: 1949 us against
619 us), and W8A8 also quantized the image for it."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core import plan_checks
from bitlens.core.engine import Engine
from bitlens.core.export.deployed import optimized_model
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.search.layer_cost import depthwise
from tests import builders
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def stem_net(cin: int, k: int) -> onnx.ModelProto:
    """x[1,cin,16,16] -> stem (Conv 16, k x k, stride 2) -> Relu -> body (Conv 16, 3 x 3)
    -> Relu -> head (Conv 8, 1 x 1) -> y"""
    rng = np.random.default_rng(0)
    shapes = {"stem": (16, cin, k, k), "body": (16, 16, 3, 3), "head": (8, 16, 1, 1)}
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), f"{n}_w")
             for n, s in shapes.items()]  # fmt: skip
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "stem_w"], ["s"], name="stem", pads=[k // 2] * 4, strides=[2, 2]),
        mk("Relu", ["s"], ["sr"]),
        mk("Conv", ["sr", "body_w"], ["b"], name="body", pads=[1] * 4), mk("Relu", ["b"], ["br"]),
        mk("Conv", ["br", "head_w"], ["y"], name="head"),
    ]  # fmt: skip
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        nodes, "stem", [vi("x", TensorProto.FLOAT, [1, cin, 16, 16])],
        [vi("y", TensorProto.FLOAT, [1, 8, 8, 8])], inits,
    )  # fmt: skip
    return builders.model(g, 13)


def _w8a8(cin: int, k: int, path: Path):
    model = from_proto(stem_net(cin, k))
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    result, report = run(engine, plan, path)
    assert report.passed, report.failures
    ops = collections.Counter(
        n.op_type for n in optimized_model(str(result.path), ["CPUExecutionProvider"]).graph.node
    )
    return plan, result, ops


def test_rgb_3x3_stem_stays_float(tmp_path: Path) -> None:
    plan, result, ops = _w8a8(3, 3, tmp_path / "stem.onnx")
    assert plan["stem"].activation is None  # the image is not quantized for it
    assert plan["body"].activation is not None
    warnings = plan_checks.deployment_warnings(plan)
    assert [w for w in warnings if "'stem'" in w and "3 input channel(s) through a 3 x 3" in w]
    assert not result.layers["stem"].integer_kernel and result.layers["body"].integer_kernel
    # body; the stem runs as a float Conv, and so does the head (its output is the model's)
    assert ops["QLinearConv"] == 1 and ops["Conv"] == 2, ops
    assert ops["QuantizeLinear"] == 1, ops  # the stem's output, for body: not the image


def test_grayscale_stem_is_no_depthwise_conv() -> None:
    """A one-channel stem's weight [16, 1, 3, 3] looks like a depthwise conv's; its group
    (1) tells them apart (the latency model counted it as depthwise)."""
    info = from_proto(stem_net(1, 3)).info
    assert info.layer("stem").group == 1 and not depthwise(info.layer("stem"))
    assert plan_checks.deployment_warnings(Plan.preset(info, "W8A8"))  # stays float too


def test_7x7_stem_keeps_its_integer_kernel(tmp_path: Path) -> None:
    """ResNet's stem (3 channels, 7 x 7: 147 values per output): QLinearConv was faster."""
    plan, result, ops = _w8a8(3, 7, tmp_path / "stem7.onnx")
    assert plan["stem"].activation is not None and result.layers["stem"].integer_kernel
    assert ops["QLinearConv"] == 2, ops  # stem and body
