"""A classifier head written MatMul -> Cast -> Add(bias) -> Softmax (open_nsfw's) runs as an
integer kernel: ONNX Runtime fuses DequantizeLinear -> MatMul -> Add with a float output
into a float Gemm, so the ort-cpu target requantizes the bias Add's output (QGemm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def head() -> onnx.ModelProto:
    """x[1,3,8,8] -> conv -> Relu -> GlobalAveragePool -> Flatten -> fc (MatMul w[16,4])
    -> Cast(float) -> Add(bias) -> Softmax -> y[1,4]"""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32), "cw"),
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 4)).astype(np.float32), "fw"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "fb"),
    ]
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "cw"], ["c"], name="conv", pads=[1] * 4),
        mk("Relu", ["c"], ["r"]),
        mk("GlobalAveragePool", ["r"], ["g"]),
        mk("Flatten", ["g"], ["f"]),
        mk("MatMul", ["f", "fw"], ["m"], name="fc"),
        mk("Cast", ["m"], ["mc"], to=TensorProto.FLOAT),
        mk("Add", ["mc", "fb"], ["logits"]),
        mk("Softmax", ["logits"], ["y"]),
    ]
    g = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_matmul_bias_head_runs_as_an_integer_kernel(tmp_path: Path) -> None:
    model = from_proto(head())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    drain(engine.calibrate("minmax"))
    plan = Plan.preset(engine.info, "W8A8")
    placed = engine.placement(plan)
    assert "logits" in placed and "so it runs as QGemm" in placed["logits"].reason
    _, report = run(engine, plan, tmp_path / "head.onnx")
    assert report.passed, report.failures
    kernels = {la.name: la.kernel for la in report.layers}
    assert kernels["fc"] == "QGemm", kernels
    assert kernels["conv"] == "QLinearConv"
