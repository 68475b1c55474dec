"""A Shape node reading a quantized tensor reads its codes in the export
(bitlens.core.export.shape_reads): ONNX Runtime kept a DequantizeLinear of the whole tensor
for the Shape alone (trueocr's detector: 9 of them)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.export.deployed import optimized_model
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests import builders
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def shape_net() -> onnx.ModelProto:
    """x[1,8,8,8] -> conv0 -> Relu -> r -> conv1 -> Relu -> c1; Shape(r) -> Reshape(c1) -> y
    (a detector's head reshaped to its input's shape)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32), n)
             for n in ("w0", "w1")]  # fmt: skip
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1] * 4), mk("Relu", ["c0"], ["r"]),
        mk("Conv", ["r", "w1"], ["c1"], name="conv1", pads=[1] * 4), mk("Relu", ["c1"], ["r1"]),
        mk("Shape", ["r"], ["s"]), mk("Reshape", ["r1", "s"], ["y"]),
    ]  # fmt: skip
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        nodes, "shape", [vi("x", TensorProto.FLOAT, [1, 8, 8, 8])],
        [vi("y", TensorProto.FLOAT, [1, 8, 8, 8])], inits,
    )  # fmt: skip
    return builders.model(g, 13)


def test_shape_reads_the_codes(tmp_path: Path) -> None:
    model = from_proto(shape_net())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    result, report = run(engine, Plan.preset(engine.info, "W8A8"), tmp_path / "w8a8.onnx")
    assert report.passed, report.failures  # the same outputs as simulated
    written = onnx.load(str(result.path)).graph
    producer = {o: n for n in written.node for o in n.output}
    (shape,) = [n for n in written.node if n.op_type == "Shape"]
    assert producer[shape.input[0]].op_type == "QuantizeLinear"
    opt = optimized_model(str(result.path), ["CPUExecutionProvider"]).graph
    producer = {o: n for n in opt.node for o in n.output}
    readers = collections.Counter(
        producer[i].op_type for n in opt.node if n.op_type == "Shape" for i in n.input
    )
    assert "DequantizeLinear" not in readers, readers
    assert sum(n.op_type == "QLinearConv" for n in opt.node) == 2
