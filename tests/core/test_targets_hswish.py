"""A paddle-style HardSwish ``x * Clip(x + 3, 0, 6) / 6`` between integer kernels."""

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
from bitlens.core.export.deployed import optimized_model
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.targets import scalar_code
from tests import builders
from tests.builders import conv_chain, random_feeds
from tests.core.as_written import plain_convs  # noqa: F401 (a fixture)
from tests.core.test_engine import plain_run, rewritten
from tests.core.test_export_models import run

# bit for bit against ORT_DISABLE_ALL's plain Conv (as_written.plain_convs)
pytestmark = pytest.mark.usefixtures("plain_convs")


@pytest.fixture(scope="module")
def engine() -> Engine:
    model = from_proto(conv_chain("hswish", kernel=3))
    feeds = [random_feeds(model.proto, seed=s) for s in range(4)]
    for f in feeds:
        f["x"] = f["x"] * 3  # values past -3 and +3: the Clip cuts both ends
    return Engine(model, Dataset(tuple(feeds), source="random feeds"), device="cpu")


def test_scalar_code_is_exact() -> None:
    for v in (3.0, 0.1, -2.5, 0.0, 1e-30, 6.0):
        code, scale, zp = scalar_code(v)
        got = ort.InferenceSession(_dq_model(code, scale, zp)).run(None, {})[0]
        assert got == np.float32(v)  # ORT's own DequantizeLinear: bit for bit


def test_placement_quantizes_the_clip_and_the_mul(engine: Engine) -> None:
    placed = engine.placement(Plan.preset(engine.info, "W8A8"))
    for i in (0, 1):
        assert {f"c{i}", f"r{i}", f"m{i}", f"a{i}"} <= set(placed)
        assert f"p{i}" not in placed  # the Add before its Clip
        # the Div by 6: the Mul's grid divided by 6 (bitlens.core.export.rescale)
        assert (placed[f"a{i}"].range_of, placed[f"a{i}"].range_scale) == (f"m{i}", 1 / 6)
    assert placed["r0"].range_of == "r0"
    # with int8 symmetric activations the Clip cannot be absorbed: the Add stays float
    sym = engine.placement(Plan.uniform(engine.info, "int8 sym ch", "int8 sym"))
    assert "r0" not in sym


def test_engine_simulates_exactly_the_exported_quantizers(engine: Engine, tmp_path: Path) -> None:
    plan = Plan.preset(engine.info, "W8A8")
    got = engine.run_outputs(plan)
    feeds = [engine.data.samples[i] for i in engine.data.evaluation]
    want = plain_run(rewritten(engine, plan), feeds)  # real QuantizeLinear/DequantizeLinear
    for g, r in zip(got["c2"], want, strict=True):
        np.testing.assert_array_equal(g, r)
    result, report = run(engine, plan, tmp_path / "hswish.onnx")
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)  # the file computes the simulation
    kernels = {la.name: la.kernel for la in report.layers}
    assert kernels["conv0"] == kernels["conv1"] == "QLinearConv"  # conv2 writes the graph output
    opt = optimized_model(str(result.path), ["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in opt.graph.node)
    # x + 3 as QLinearAdd, its Clip removed, x * r as QLinearMul, the Div by 6 folded into
    # the DequantizeLinear of the Mul's codes (the next QLinearConv's input scale)
    assert ops["QLinearAdd"] == 2 and ops["QLinearMul"] == 2, ops
    assert ops["Add"] == 0 and ops["Mul"] == 0 and ops["Div"] == 0, ops
    # conv2 (it writes the graph output: a float Conv) reads the Div's folded quantizer, so it
    # needs no guard of its own (bitlens.core.export.layers._guard) and no Clip is left
    assert ops["Clip"] == 0 and ops["Conv"] == 1, ops


def _dq_model(code: int, scale: float, zp: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.asarray(code, np.uint8), "c"),
        numpy_helper.from_array(np.asarray(scale, np.float32), "s"),
        numpy_helper.from_array(np.asarray(zp, np.uint8), "z"),
    ]
    g = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["c", "s", "z"], ["y"])], "dq", [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], inits,
    )  # fmt: skip
    return builders.model(g, 13).SerializeToString()


def bn_hswish_net() -> onnx.ModelProto:
    """x -> conv0 -> BatchNormalization -> HardSwish (Paddle's form, its scalars Constant
    nodes) -> conv1 -> y: how PicoDet and PP-LCNet export with their BN unfolded."""
    rng = np.random.default_rng(1)
    mk = helper.make_node

    def const(name: str, v: float) -> onnx.NodeProto:
        return mk("Constant", [], [name], value=numpy_helper.from_array(np.asarray(v, np.float32)))

    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w0", rng.normal(0, 0.3, (8, 3, 3, 3))), ("w1", rng.normal(0, 0.3, (4, 8, 1, 1))),
        ("g", rng.uniform(0.5, 2, 8)), ("b", rng.normal(0, 1, 8)),
        ("mu", rng.normal(0, 0.2, 8)), ("var", rng.uniform(0.5, 2, 8)),
    ]]  # fmt: skip
    nodes = [
        const("three", 3), const("zero", 0), const("six", 6),
        mk("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1] * 4),
        mk("BatchNormalization", ["c0", "g", "b", "mu", "var"], ["bn"]),
        mk("Add", ["bn", "three"], ["p"]), mk("Clip", ["p", "zero", "six"], ["r"]),
        mk("Mul", ["bn", "r"], ["m"]), mk("Div", ["m", "six"], ["h"]),
        mk("Conv", ["h", "w1"], ["y"], name="conv1"),
    ]  # fmt: skip
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "bn_hswish", [vi("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [vi("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)  # fmt: skip
    return builders.model(g, 13)


def test_hswish_after_an_unfolded_batchnorm_stays_float(tmp_path: Path) -> None:
    """Quantizing the BN's output too (so the Add and Mul could still fuse) was measured
    slower and less accurate on rapidocr's PP-OCR direction classifier (0.84x ORT's QDQ
    and 29.5 dB instead of 0.76x and 32.7 dB): only the conv output is quantized."""
    model = from_proto(bn_hswish_net(), fold_bn=False)  # as the file has it
    feeds = [random_feeds(model.proto, seed=s) for s in range(4)]
    engine = Engine(model, Dataset(tuple(feeds), source="random feeds"), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    placed = engine.placement(plan)
    assert "c0" in placed and not {"bn", "p", "r", "m"} & set(placed)
    result, report = run(engine, plan, tmp_path / "bn.onnx")
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)
    names = {t for n in onnx.load(str(result.path)).graph.node for t in n.input}
    assert not any(n.endswith("_exact") for n in names)  # the 3 stays a float constant
