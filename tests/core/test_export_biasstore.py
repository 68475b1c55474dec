"""Integer-kernel biases stored compactly (bitlens.core.export.biasstore): int8/int16 codes
under a Cast and the scale as Mul(s_x, s_w), which ONNX Runtime folds at load; the kernels
and the deployed outputs are those of the plain int32 + float32-scale form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.export import biasstore
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def linear_net(bias_std: float) -> onnx.ModelProto:
    """x[1,8,64] -> MatMul(64x96) + Add(bias) -> Relu -> MatMul(96x48) + Add(bias) -> y."""
    rng = np.random.default_rng(4)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.15, (64, 96)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, bias_std, 96).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.normal(0, 0.1, (96, 48)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.normal(0, bias_std, 48).astype(np.float32), "b2"),
    ]
    mk = helper.make_node
    nodes = [
        mk("MatMul", ["x", "w1"], ["m1"], name="fc1"), mk("Add", ["m1", "b1"], ["a1"]),
        mk("Relu", ["a1"], ["r1"]),
        mk("MatMul", ["r1", "w2"], ["m2"], name="fc2"), mk("Add", ["m2", "b2"], ["y"]),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 48])], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _outputs(path: Path, engine: Engine) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [sess.run(["y"], engine.data.samples[i])[0] for i in engine.data.evaluation]


@pytest.mark.parametrize(
    ("bias_std", "dtype"), [(0.02, TensorProto.INT16), (1e4, TensorProto.INT32)]
)
def test_compact_bias_deploys_identically(
    bias_std: float, dtype: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = from_proto(linear_net(bias_std))
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    result, report = run(engine, plan, tmp_path / "compact.onnx")
    assert report.passed, report.failures
    assert {la.name: la.kernel for la in report.layers} == {"fc1": "QGemm", "fc2": "QGemm"}
    assert result.accounted_bytes == result.file_bytes
    m = onnx.load(str(result.path))
    codes = [t for t in m.graph.initializer if "_i32_codes" in t.name]
    assert sorted(t.data_type for t in codes) == [dtype, dtype]
    # no stored float32 scale vector: the scale is Mul(s_x, the weight's stored scales)
    assert not [t for t in m.graph.initializer if "_i32_scale" in t.name]
    assert sum(n.op_type == "Mul" for n in m.graph.node) == 2
    # the plain form (int32 codes, stored s_x * s_w): ONNX Runtime's kernels give the same bits
    monkeypatch.setattr(biasstore, "MIN_CHANNELS", 10**9)
    plain, _ = run(engine, plan, tmp_path / "plain.onnx")
    assert plain.file_bytes > result.file_bytes
    for a, b in zip(_outputs(result.path, engine), _outputs(plain.path, engine), strict=True):
        np.testing.assert_array_equal(a, b)
