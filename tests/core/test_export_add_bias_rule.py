"""A MatMul's int32 bias is the one constant the model's layer lists as its bias (the Add
after it, through float Casts): the constant the engine rounds to the int32 grid too. An
Add constant other nodes also read gets an int32 copy per integer-kernel layer, each at its
own s_x * s_w, in the file as in the simulation, and the exporter's per-layer byte
accounting stays exact (no slow re-measure)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from onnx import helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests import builders
from tests.core.as_written import assert_file_is_engine


def shared_add_bias() -> Engine:
    """Two linear layers whose Adds read one constant ``b``; the first through a Cast
    (open_nsfw's head writes MatMul -> Cast -> Add)::

        x[N,16] -> MatMul(w1) -> Cast -> Add(b) -> Relu -> MatMul(w2) -> Add(b) -> y[N,16]
    """
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
        helper.make_node("Cast", ["m1"], ["c1"], to=1),
        helper.make_node("Add", ["c1", "b"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MatMul", ["r1", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "b"], ["y"]),
    ]
    g = helper.make_graph(
        nodes, "shared_add_bias",
        [helper.make_tensor_value_info("x", builders.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", builders.FLOAT, ["N", 16])],
        [builders.init("w1", builders.weights((16, 16), seed=71, channel_axis=1)),
         builders.init("w2", builders.weights((16, 16), seed=72, channel_axis=1)),
         builders.init("b", builders.bias(16, seed=73))],
    )  # fmt: skip
    rng = np.random.default_rng(0)
    feeds = tuple({"x": rng.standard_normal((4, 16)).astype(np.float32)} for _ in range(4))
    model = from_proto(builders.model(g))
    return Engine(model, Dataset(feeds, source="test"), device="cpu")


def test_shared_add_constant_gets_an_int32_copy_per_layer_as_simulated(
    tmp_path: Path, caplog
) -> None:
    # ALBERT's shared layers (sudachi-b-imitator) read one bias from four Adds: kept float,
    # ONNX Runtime fused each MatMul + Add into a float Gemm (no integer kernel)
    engine = shared_add_bias()
    assert [la.biases[0].name for la in engine.info.layers] == ["b", "b"]
    plan = Plan.preset(engine.info, "W8A8")
    with caplog.at_level(logging.WARNING):
        result = drain(export(engine, plan, tmp_path / "m.onnx", ExportOptions()))
    assert not [r for r in caplog.records if "per-layer export sizes off" in r.getMessage()]
    assert {n: r.bias is not None for n, r in result.layers.items()} == {"fc1": True, "fc2": True}
    assert_file_is_engine(engine, plan, result.path)  # the file is the simulation
