"""A Div/Mul by a positive constant between quantizers, exported as one DequantizeLinear
(bitlens.core.export.rescale)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.export.deployed import optimized_model
from bitlens.core.export.rescale import identity_on_codes
from bitlens.core.formats import parse_format, uniform
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests import builders
from tests.builders import conv_chain, random_feeds
from tests.core.test_export_models import run

U8 = parse_format("uint8 asym")


def _ort_requantize(codes: np.ndarray, s: float, z: int, op: str, c: float, s2, z2) -> np.ndarray:
    """ONNX Runtime's own DequantizeLinear -> Div/Mul -> QuantizeLinear of ``codes``."""
    inits = [
        numpy_helper.from_array(np.float32(s), "s"), numpy_helper.from_array(np.uint8(z), "z"),
        numpy_helper.from_array(np.float32(c), "c"), numpy_helper.from_array(np.float32(s2), "s2"),
        numpy_helper.from_array(np.uint8(z2), "z2"),
    ]  # fmt: skip
    nodes = [
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["x"]),
        helper.make_node(op, ["x", "c"], ["y"]),
        helper.make_node("QuantizeLinear", ["y", "s2", "z2"], ["out"]),
    ]
    g = helper.make_graph(
        nodes, "rq", [helper.make_tensor_value_info("q", TensorProto.UINT8, [256])],
        [helper.make_tensor_value_info("out", TensorProto.UINT8, [256])], inits,
    )  # fmt: skip
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # as written
    sess = ort.InferenceSession(builders.model(g, 13).SerializeToString(), so)
    return sess.run(None, {"q": codes})[0]


@pytest.mark.parametrize(("op", "c"), [("Div", 6.0), ("Div", 0.7), ("Mul", 0.5), ("Mul", 3.3)])
def test_the_scaled_grid_returns_every_code_in_onnx_runtime(op: str, c: float) -> None:
    rng = np.random.default_rng(7)
    codes = np.arange(256, dtype=np.uint8)
    for _ in range(20):
        lo, hi = float(-rng.uniform(0, 3)), float(rng.uniform(0.1, 5))
        s, z = uniform.params_from_range(np.asarray(lo), np.asarray(hi), U8)
        k = 1 / c if op == "Div" else c
        s2, z2 = uniform.params_from_range(np.asarray(lo * k), np.asarray(hi * k), U8)
        src = QuantizerRecord("", "x", "xd", U8.name, "qdq", "xq", float(s), float(z), "", 10)
        ours = identity_on_codes(U8, src, op, np.float32(c), float(s2), float(z2))
        theirs = np.array_equal(_ort_requantize(codes, s, int(z), op, c, s2, int(z2)), codes)
        assert ours and theirs
    # a grid not scaled by the constant is no identity: the check refuses to fold it
    src = QuantizerRecord("", "x", "xd", U8.name, "qdq", "xq", 0.02, 3.0, "", 10)
    assert not identity_on_codes(U8, src, op, np.float32(c), 0.02, 3.0)
    assert not identity_on_codes(
        U8, src, op, np.float32(c), 0.02 * (c if op == "Mul" else 1 / c), 4.0
    )


def silu_times(c: float) -> onnx.ModelProto:
    """conv_chain("silu") with a Mul by the scalar ``c`` after each SiLU."""
    m = conv_chain("silu", kernel=3)
    g = m.graph
    nodes = []
    for n in g.node:
        if n.op_type == "Mul" and n.output[0] in ("a0", "a1"):
            a = n.output[0]
            n.output[0] = f"{a}_pre"
            nodes += [n, helper.make_node("Mul", [f"{a}_pre", "c"], [a])]
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.append(numpy_helper.from_array(np.float32(c), "c"))
    onnx.checker.check_model(m)
    return m


def test_a_mul_by_a_constant_after_silu_is_folded(tmp_path: Path) -> None:
    model = from_proto(silu_times(0.5))
    feeds = tuple(random_feeds(model.proto, seed=s) for s in range(4))
    engine = Engine(model, Dataset(feeds, source="random feeds"), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    placed = engine.placement(plan)
    assert (placed["a0"].range_of, placed["a0"].range_scale) == ("a0_pre", 0.5)
    result, report = run(engine, plan, tmp_path / "silu_half.onnx")
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)  # the file computes the simulation
    written = onnx.load(str(result.path)).graph.node
    assert not [n for n in written if "c" in n.input]  # the two Muls by 0.5 are gone
    opt = optimized_model(str(result.path), ["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in opt.graph.node)
    assert ops["QLinearMul"] == 2 and ops["Mul"] == 0 and ops["QLinearConv"] == 2, ops
