"""MatMul/Gemm patterns exporters write that ONNX Runtime makes no integer kernel of
(bitlens.core.targets.unfused_pattern).

A MatMul whose constant weight is a stack of matrices ([G, K, N], or [1, K, N] broadcast
over a batch) with per-channel int8 weights and an 8-bit activation: ORT's QDQ fusion still
turns the group into QLinearMatMul (or MatMulIntegerToFloat), whose kernel then refuses the
1-D zero point at run time ("weight zero point must be a scalar, 1D tensor of size 1, or
last to second dimension is 1"): `bitlens export --preset W8A8` wrote a file ORT could not
run and the fidelity check stopped with a traceback.

A Gemm with a bias and alpha or beta not 1, and a Gemm or MatMul whose weight is the first
operand: written as fusable QDQ groups and predicted as integer kernels (speed, file size),
they ran as float Gemm/MatMul ("integer kernels: got 0 of 3"). Such layers keep their
weights folded, as predicted.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from bitlens.core.engine import Engine
from bitlens.core.export.deployed import INTEGER_KERNELS
from bitlens.core.export.exporter import integer_kernel_layers
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.plan_checks import deployment_warnings
from tests.builders import FLOAT, init, model, weights
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def stacked_matmuls() -> onnx.ModelProto:
    """x[2,5,16] -> MatMul w[2,16,8] -> Relu -> MatMul w2[1,8,4] -> y[2,5,4]."""
    mk = helper.make_node
    g = helper.make_graph(
        [mk("MatMul", ["x", "w"], ["a"], name="grouped"), mk("Relu", ["a"], ["r"]),
         mk("MatMul", ["r", "w2"], ["y"], name="broadcast")],
        "stacked", [helper.make_tensor_value_info("x", FLOAT, [2, 5, 16])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 5, 4])],
        [init("w", weights((2, 16, 8), seed=1, fan_in=16, channel_axis=2)),
         init("w2", weights((1, 8, 4), seed=2, fan_in=8, channel_axis=2))],
    )  # fmt: skip
    return model(g, opset=17)


def test_w8a8_export_of_stacked_matmul_weights_runs_in_ort(tmp_path: Path) -> None:
    m = from_proto(stacked_matmuls())
    engine = Engine(m, random_feeds(m.info, 2), device="cpu")
    w8a8 = Plan.preset(m.info, "W8A8")
    assert integer_kernel_layers(m.info, w8a8, engine.placement(w8a8)) == set()
    per_tensor = w8a8.with_choices(
        {n: dataclasses.replace(c, weight=parse_format("int8 sym"))
         for n, c in w8a8.choices.items()}
    )  # fmt: skip
    # per-tensor weights (a scalar zero point) still go to the integer kernels
    kernels = integer_kernel_layers(m.info, per_tensor, engine.placement(per_tensor))
    assert kernels == {"grouped", "broadcast"}
    result, report = run(engine, w8a8, tmp_path / "w8a8.onnx")
    assert report.passed, report.to_dict()
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(3).standard_normal((2, 5, 16)).astype(np.float32)
    assert np.isfinite(sess.run(None, {"x": x})[0]).all()


def gemm_patterns() -> onnx.ModelProto:
    """x[4,16] -> Gemm(x, w1, b1, beta=2) -> Relu -> Gemm(r, w2) (fuses: the control)
    -> MatMul(w3, c) -> Relu -> Gemm(w4, e) -> y[5,8]."""
    mk = helper.make_node
    g = helper.make_graph(
        [mk("Gemm", ["x", "w1", "b1"], ["a"], name="scaled", beta=2.0), mk("Relu", ["a"], ["r"]),
         mk("Gemm", ["r", "w2"], ["c"], name="plain"),
         mk("MatMul", ["w3", "c"], ["d"], name="matmul_first"), mk("Relu", ["d"], ["e"]),
         mk("Gemm", ["w4", "e"], ["y"], name="gemm_first")],
        "gemms", [helper.make_tensor_value_info("x", FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", FLOAT, [5, 8])],
        [init("w1", weights((16, 8), seed=1, channel_axis=1)), init("b1", weights((8,), seed=2)),
         init("w2", weights((8, 8), seed=3, channel_axis=1)), init("w3", weights((6, 4), seed=4)),
         init("w4", weights((5, 6), seed=5))],
    )  # fmt: skip
    return model(g, opset=17)


def test_gemm_patterns_without_integer_kernels_are_predicted_float(tmp_path: Path) -> None:
    m = from_proto(gemm_patterns())
    engine = Engine(m, random_feeds(m.info, 2), device="cpu")
    w8a8 = Plan.preset(m.info, "W8A8")
    assert integer_kernel_layers(m.info, w8a8, engine.placement(w8a8)) == {"plain"}
    said = " ".join(deployment_warnings(w8a8))
    assert "'scaled'" in said and "alpha or beta" in said
    assert "'matmul_first'" in said and "'gemm_first'" in said and "first operand" in said
    _, report = run(engine, w8a8, tmp_path / "w8a8.onnx")
    assert report.passed, report.to_dict()
    ran = {la.name: any(k in la.kernel for k in INTEGER_KERNELS) for la in report.layers}
    assert ran == {la.name: la.integer_kernel for la in report.layers}  # as predicted
    assert ran["plain"]
