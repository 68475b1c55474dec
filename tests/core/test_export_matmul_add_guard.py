"""A MatMul + bias Add that ONNX Runtime fuses into a Gemm keeps its planned weights.

OSKut's Dense layers (tf2onnx: 2-D MatMul, then Add of the bias) with int3 weights, folded to
float in the file, read a uint8 input and feed a layer whose uint8 input quantizer follows a
Relu. ONNX Runtime's MatMulAddFusion made the pair a Gemm, and WeightBiasQuantization then
re-quantized its weights to int8 inside a QGemm: the next quantizer moved by 2 LSB and the
searched plan's export failed its own fidelity check. A Clip guard (as Conv and Gemm layers
get) keeps the Gemm from reading a DequantizeLinear::

    x[N,16] -> MatMul(w1) -> Add(b1) -> Relu -> MatMul(w2) -> Add(b2) -> y[N,8]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests import builders
from tests.core.as_written import assert_file_is_engine
from tests.core.test_export_models import run


def dense_pair(row: bool = False, hidden: int = 64) -> Engine:
    """The two Dense layers; ``row``: biases written as rows ``[1, n]`` (jax2tf)."""
    shape = (lambda n: (1, n)) if row else (lambda n: (n,))
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "b2"], ["y"]),
    ]
    g = helper.make_graph(
        nodes, "dense_pair",
        [helper.make_tensor_value_info("x", builders.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", builders.FLOAT, ["N", 8])],
        [builders.init("w1", builders.weights((16, hidden), seed=81, channel_axis=1)),
         builders.init("b1", builders.bias(hidden, seed=82).reshape(shape(hidden))),
         builders.init("w2", builders.weights((hidden, 8), seed=83, channel_axis=1)),
         builders.init("b2", builders.bias(8, seed=84).reshape(shape(8)))],
    )  # fmt: skip
    rng = np.random.default_rng(0)
    feeds = tuple({"x": rng.standard_normal((32, 16)).astype(np.float32)} for _ in range(4))
    return Engine(from_proto(builders.model(g)), Dataset(feeds, source="test"), device="cpu")


def _requantized_by_ort(path: Path, tmp_path: Path) -> list[str]:
    """Weights ONNX Runtime quantized itself when it optimized the file (named *_weight_q)."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    opt = onnx.load(so.optimized_model_filepath)
    return [t.name for t in opt.graph.initializer if t.name.endswith("_weight_q")]


def test_folded_matmul_before_a_bias_add_is_not_requantized_by_ort(tmp_path: Path) -> None:
    engine = dense_pair()
    uint8 = parse_format("uint8 asym")
    plan = Plan.float(engine.info).with_choices({
        "fc1": LayerChoice(weight=parse_format("int3 sym ch"), activation=uint8),
        "fc2": LayerChoice(weight=None, activation=uint8),
    })  # fmt: skip
    path = tmp_path / "m.onnx"
    _, report = run(engine, plan, path)
    assert _requantized_by_ort(path, tmp_path) == []
    assert report.passed, report.failures
    assert_file_is_engine(engine, plan, path)
