"""Gemms sharing one weight and one bias (an LSTMCell unrolled by PyTorch's exporter) run
as QGemm after a W8A8 export (ort-cpu target).

ONNX Runtime fuses ``DequantizeLinear -> Gemm`` into QGemm only when every input of the
Gemm, the bias C included, is a DequantizeLinear output (GemmNodeGroupSelector in
onnxruntime/core/optimizer/qdq_transformer/selectors_actions/qdq_selectors.cc). A bias
read by several Gemms used to stay float, and so did every one of those Gemms
(captcha-whisperer's CRNN: 80 Gemms on 4 shared weights ran float, 1.24x slower than float).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests import builders
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def shared_gemm_chain(steps: int = 3) -> onnx.ModelProto:
    """x[2,16] -> (Gemm(w[16,16], b, transB=1) -> Tanh) x steps -> y[2,16], one w and b."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (16, 16)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b"),
    ]
    nodes, t = [], "x"
    for i in range(steps):
        nodes.append(helper.make_node("Gemm", [t, "w", "b"], [f"g{i}"], name=f"gemm{i}", transB=1))
        t = "y" if i == steps - 1 else f"h{i}"
        nodes.append(helper.make_node("Tanh", [f"g{i}"], [t], name=f"tanh{i}"))
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 16]) for n in ("x", "y")]
    return builders.model(helper.make_graph(nodes, "cell", io[:1], io[1:], inits))


def test_gemms_sharing_a_weight_and_bias_run_as_qgemm(tmp_path: Path) -> None:
    model = from_proto(shared_gemm_chain())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    out = tmp_path / "shared.onnx"
    result, report = run(engine, plan, out)
    assert {la.name: la.kernel for la in report.layers} == {f"gemm{i}": "QGemm" for i in range(3)}
    assert all(result.layers[f"gemm{i}"].bias is not None for i in range(3))
    assert report.passed, report.failures
    # each Gemm reads its own int32 bias at its own s_x * s_w; the float bias is gone
    exported = onnx.load(out)
    assert "b" not in {t.name for t in exported.graph.initializer}
    # the codes of each copy are the float bias rounded at that Gemm's scale (float64 reference)
    inits = {t.name: numpy_helper.to_array(t) for t in exported.graph.initializer}
    by_out = {o: n for n in exported.graph.node for o in n.output}
    bias_f = numpy_helper.to_array(shared_gemm_chain().graph.initializer[1]).astype(np.float64)
    for n in (n for n in exported.graph.node if n.op_type == "Gemm"):
        dq = by_out[n.input[2]]
        codes, scale = inits[dq.input[0]], inits[dq.input[1]].astype(np.float64)
        assert codes.dtype == np.int32
        np.testing.assert_array_equal(codes, np.rint(bias_f / scale))
    ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
