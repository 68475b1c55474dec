"""Classifier heads run as integer kernels after a W8A8 export (ort-cpu target).

open_nsfw's head is written ``MatMul -> Cast(float) -> Add(bias) -> Softmax``. ONNX
Runtime drops the float-to-float Cast and fuses ``MatMul + Add`` into a Gemm before it
looks for QDQ groups; with the bias a float constant that Gemm stays float (the weight
dequantized on every run), with the bias as int32 DequantizeLinear at ``s_x * s_w`` it
becomes QGemm with a float output, and no quantizer on the logits is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def head(kind: str) -> onnx.ModelProto:
    """x[1,3,8,8] -> conv -> Relu -> GlobalAveragePool -> Flatten -> fc -> Softmax -> y[1,4]

    fc is ``MatMul(w[16,4]) -> Cast(float) -> Add(bias)`` ("matmul_cast"), ``MatMul -> Add``
    ("matmul") or ``Gemm(w[4,16], bias, transB=1)`` ("gemm")."""
    rng = np.random.default_rng(0)
    fw = rng.normal(0, 0.3, (16, 4)).astype(np.float32)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32), "cw"),
        numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "fb"),
    ]
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "cw"], ["c"], name="conv", pads=[1] * 4),
        mk("Relu", ["c"], ["r"]),
        mk("GlobalAveragePool", ["r"], ["g"]),
        mk("Flatten", ["g"], ["f"]),
    ]
    if kind == "gemm":
        inits.append(numpy_helper.from_array(np.ascontiguousarray(fw.T), "fw"))
        nodes.append(mk("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1))
    else:
        inits.append(numpy_helper.from_array(fw, "fw"))
        nodes.append(mk("MatMul", ["f", "fw"], ["m"], name="fc"))
        if kind == "matmul_cast":
            nodes.append(mk("Cast", ["m"], ["mc"], to=TensorProto.FLOAT))
        nodes.append(mk("Add", ["mc" if kind == "matmul_cast" else "m", "fb"], ["logits"]))
    nodes.append(mk("Softmax", ["logits"], ["y"]))
    g = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("kind", ["matmul_cast", "matmul", "gemm"])
def test_head_runs_as_an_integer_kernel(kind: str, tmp_path: Path) -> None:
    model = from_proto(head(kind))
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    # the logits get no quantizer: only the conv's output is added by the target
    assert set(engine.placement(plan)) == {"r", "g", "f"}
    result, report = run(engine, plan, tmp_path / f"{kind}.onnx")
    kernels = {la.name: la.kernel for la in report.layers}
    assert kernels == {"conv": "QLinearConv", "fc": "QGemm"}
    assert result.layers["fc"].bias is not None  # the int32 bias is what makes it QGemm
    assert report.passed, report.failures
