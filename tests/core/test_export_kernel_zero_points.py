"""Zero points of symmetric per-channel int8 weights on MatMul/Gemm integer kernels.

QGemm and MatMulIntegerToFloat want the weight's zero point written out even where it is
0; the export stored those zeros as an int8 initializer, a byte per output channel the plan
does not account. On a narrow-input layer (8 input features, a tabular MLP's first layer)
that is 8% over the plan, and `bitlens export --preset W8A8` failed its fidelity check
("stores 832 bytes, the plan accounts 768 (upcast?)"). From 128 channels the zeros are made
at load by a ConstantOfShape (ONNX Runtime folds it before fusing), as for packed narrow
codes; below, they are stored (smaller than the node) and the check counts them as zeros.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from bitlens.core.engine import Engine
from bitlens.core.export.deployed import INTEGER_KERNELS
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.builders import FLOAT, init, model, weights
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def narrow_mlp() -> onnx.ModelProto:
    """x[4,8] -> MatMul w1[8,128] -> Relu -> Gemm(transB) w2[4,128] -> y[4,4], and
    x -> Gemm w3[8,48] -> z[4,48]."""
    mk = helper.make_node
    g = helper.make_graph(
        [mk("MatMul", ["x", "w1"], ["a"], name="fc1"), mk("Relu", ["a"], ["r"]),
         mk("Gemm", ["r", "w2"], ["y"], name="fc2", transB=1),
         mk("Gemm", ["x", "w3"], ["z"], name="side")],
        "narrow_mlp", [helper.make_tensor_value_info("x", FLOAT, [4, 8])],
        [helper.make_tensor_value_info("y", FLOAT, [4, 4]),
         helper.make_tensor_value_info("z", FLOAT, [4, 48])],
        [init("w1", weights((8, 128), seed=1, channel_axis=1)),
         init("w2", weights((4, 128), seed=2)), init("w3", weights((8, 48), seed=3, channel_axis=1))],
    )  # fmt: skip
    return model(g, opset=17)


def test_w8a8_narrow_layers_store_what_the_plan_accounts(tmp_path: Path) -> None:
    m = from_proto(narrow_mlp())
    engine = Engine(m, random_feeds(m.info, 2), device="cpu")
    result, report = run(engine, Plan.preset(m.info, "W8A8"), tmp_path / "w8a8.onnx")
    assert report.passed, report.failures
    for la in report.layers:
        assert la.integer_kernel and any(k in la.kernel for k in INTEGER_KERNELS), la
    stored = {la.name: la.bytes_stored - la.bytes_planned for la in report.layers}
    assert stored == {"fc1": 0, "fc2": 4, "side": 48}  # their 4 and 48 zeros, as int8
    exported = onnx.load(str(result.path))
    assert [n.op_type for n in exported.graph.node].count("ConstantOfShape") == 1
