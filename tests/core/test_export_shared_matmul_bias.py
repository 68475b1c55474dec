"""Linear layers run several times on one weight and one bias (ALBERT's shared layers) keep
their integer kernel after a W8A8 export.

sudachi-b-imitator (static input [1, 256]) runs each Linear four times: four MatMul + Add
pairs read one weight and one bias. On a static (or 2-D) input ONNX Runtime 1.31 fuses
MatMul + Add into a Gemm before it matches QDQ groups; with the bias kept float, as a
bias several Adds read was, the Gemm stays float (24 of 27 layers, 1.13-1.33x float). Each
layer now reads its own int32 copy of the bias at its own s_x * s_w, and the group becomes
QGemm::

    x[1,8,16] -> (MatMul(w) -> Add(b) -> Relu) x 3 -> y[1,8,16], one w and b
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.recovery import Recovery
from tests import builders
from tests.core.as_written import assert_file_is_engine
from tests.core.test_export_models import run

STEPS = 3


def shared_linear(shape: list[int | str]) -> Engine:
    nodes, t = [], "x"
    for i in range(STEPS):
        out = "y" if i == STEPS - 1 else f"r{i}"
        nodes += [
            helper.make_node("MatMul", [t, "w"], [f"m{i}"], name=f"fc{i}"),
            helper.make_node("Add", ["b", f"m{i}"], [f"a{i}"]),  # PyTorch writes bias first
            helper.make_node("Relu", [f"a{i}"], [out]),
        ]
        t = out
    g = helper.make_graph(
        nodes, "shared_linear",
        [helper.make_tensor_value_info("x", builders.FLOAT, shape)],
        [helper.make_tensor_value_info("y", builders.FLOAT, shape)],
        [builders.init("w", builders.weights((16, 16), seed=91, channel_axis=1)),
         builders.init("b", builders.bias(16, seed=92))],
    )  # fmt: skip
    rng = np.random.default_rng(0)
    rows = [d if isinstance(d, int) else 8 for d in shape]
    feeds = tuple({"x": rng.standard_normal(rows).astype(np.float32)} for _ in range(4))
    return Engine(from_proto(builders.model(g)), Dataset(feeds, source="test"), device="cpu")


def optimized_ops(path: Path, tmp_path: Path) -> list[str]:
    """The ops ONNX Runtime runs after its graph optimizations (the file as deployed)."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


def test_shared_linear_layers_run_as_qgemm_with_own_int32_bias(tmp_path: Path) -> None:
    for shape in ([1, 8, 16], [8, 16]):  # static 3-D (Reshape around the Gemm) and 2-D
        engine = shared_linear(shape)
        assert [la.biases[0].name for la in engine.info.layers] == ["b"] * STEPS
        plan = Plan.preset(engine.info, "W8A8")
        path = tmp_path / f"shared{len(shape)}.onnx"
        result, report = run(engine, plan, path)
        assert report.passed, report.failures
        assert {la.name: la.kernel for la in report.layers} == {
            f"fc{i}": "QGemm" for i in range(STEPS)
        }
        ops = optimized_ops(path, tmp_path)
        assert ops.count("QGemm") == STEPS and "Gemm" not in ops and "MatMul" not in ops
        assert_file_is_engine(engine, plan, path)
        # each copy is the float bias rounded at its layer's s_x * s_w (float64 reference)
        exported = onnx.load(path)
        inits = {t.name: numpy_helper.to_array(t) for t in exported.graph.initializer}
        by_out = {o: n for n in exported.graph.node for o in n.output}
        b = numpy_helper.to_array(engine.model.graph_proto.graph.initializer[1])
        assert "b" not in inits  # every reader has its own copy
        for name, rec in result.layers.items():
            assert rec.bias is not None, name
            dq = by_out[rec.bias.feeds]
            codes, scale = inits[dq.input[0]], inits[dq.input[1]].astype(np.float64)
            assert codes.dtype == np.int32
            np.testing.assert_array_equal(codes, np.rint(b.astype(np.float64) / scale))


def test_bias_correction_of_shared_linear_layers_stays_a_kernel(tmp_path: Path) -> None:
    # one reader corrected (its own copy, the others read the original) and all of them
    # (the last reader left corrects the original in place, recovery/export.py)
    engine = shared_linear([1, 8, 16])
    w8a8 = Plan.preset(engine.info, "W8A8")
    for corrected in (["fc1"], [f"fc{i}" for i in range(STEPS)]):
        plan = w8a8.with_choices(
            {n: dataclasses.replace(w8a8[n], recovery=Recovery.BIAS) for n in corrected}
        )
        path = tmp_path / f"corrected{len(corrected)}.onnx"
        result, report = run(engine, plan, path)
        assert report.passed, report.failures
        assert all(result.layers[f"fc{i}"].bias is not None for i in range(STEPS))
        assert optimized_ops(path, tmp_path).count("QGemm") == STEPS
        assert_file_is_engine(engine, plan, path)
