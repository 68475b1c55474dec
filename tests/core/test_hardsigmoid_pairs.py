"""``x * HardSigmoid(x)`` (Paddle2ONNX's HardSwish at opset 11: PP-OCRv5's detector has 24)
written as x * Clip(x + b/a, 0, 1/a) / (1/a) when a model loads (bitlens.core.model.hardswish),
so W8A8 runs it as QLinearAdd and QLinearMul, and back to the pair where the export leaves it
float (bitlens.core.export.hardswish_float). Before, the pair ran in float between a
DequantizeLinear and a QuantizeLinear."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.model.hardswish import decompose_hardsigmoid_mul, pair_constants
from bitlens.core.plan import Plan
from tests import builders
from tests.core.test_bn_fold import _ort
from tests.core.test_export_models import run
from tests.core.test_hardswish_split import (
    check_loaded_rewrite,
    check_w8a8_on_integer_kernels,
    engine_on,
    hardswish_net,
)

ALPHAS = (1 / 6, 0.2)  # PP-OCRv5's two HardSigmoids, both with beta 0.5


def pair_net() -> onnx.ModelProto:
    """test_hardswish_split's net at opset 11 with each HardSwish written as Paddle2ONNX does
    there: x -> conv0 -> c0 * HardSigmoid(c0; 1/6, 0.5) -> conv1 (strided) -> HardSigmoid(c1;
    0.2, 0.5) * c1 (the Mul's inputs the other way round) -> conv2 -> y."""
    proto = hardswish_net()
    nodes = []
    for node in proto.graph.node:
        if node.op_type != "HardSwish":
            nodes.append(node)
            continue
        k = len([n for n in nodes if n.op_type == "HardSigmoid"])
        x, g = node.input[0], f"g{k}"
        nodes += [
            helper.make_node("HardSigmoid", [x], [g], name=f"hsig{k}", alpha=ALPHAS[k], beta=0.5),
            helper.make_node("Mul", [x, g] if k == 0 else [g, x], node.output, name=f"mul{k}"),
        ]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    proto.opset_import[0].version = 11
    onnx.checker.check_model(proto)
    return proto


def test_loaded_model_computes_the_pairs() -> None:
    check_loaded_rewrite(pair_net(), "2 x * HardSigmoid(x) pair(s) written as", "HardSigmoid", 3.0)


def test_only_exact_self_gating_pairs_are_rewritten() -> None:
    """A squeeze-and-excitation gate x * HardSigmoid(y), a HardSigmoid read twice, and an alpha
    whose float32 constants do not give it back stay as they are."""
    assert pair_constants(1 / 6, 0.5) == (3.0, 6.0) and pair_constants(0.2, 0.5) == (2.5, 5.0)
    assert pair_constants(0.0, 0.5) is None and pair_constants(-0.2, 0.5) is None
    odd = next(a for a in np.linspace(0.1, 0.3, 200, dtype=np.float32)
               if pair_constants(float(a), 0.5) is None)  # fmt: skip
    mk = helper.make_node
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        [mk("HardSigmoid", ["y"], ["s"], alpha=0.2, beta=0.5), mk("Mul", ["x", "s"], ["se"]),
         mk("HardSigmoid", ["x"], ["t"], alpha=0.2, beta=0.5), mk("Mul", ["x", "t"], ["twice"]),
         mk("Mul", ["t", "se"], ["both"]),
         mk("HardSigmoid", ["y"], ["u"], alpha=float(odd), beta=0.5), mk("Mul", ["y", "u"], ["z"])],
        "not_pairs", [vi(n, TensorProto.FLOAT, [2, 3]) for n in ("x", "y")],
        [vi(n, TensorProto.FLOAT, [2, 3]) for n in ("twice", "both", "z")],
    )  # fmt: skip
    m = builders.model(g, 11)
    assert decompose_hardsigmoid_mul(m) == 0
    assert [n.op_type for n in m.graph.node].count("HardSigmoid") == 3


def test_w8a8_runs_the_pairs_on_integer_kernels(tmp_path: Path) -> None:
    check_w8a8_on_integer_kernels(pair_net(), tmp_path)


def test_a_float_pair_is_written_back_as_it_was(tmp_path: Path) -> None:
    """W8A8's weights with float activations: the export writes each pair as the file had it
    (same alpha and beta, float32 for float32), not four float ops, at opset 11."""
    engine = engine_on(pair_net())
    w8a8 = Plan.preset(engine.info, "W8A8")
    plan = w8a8.with_choices(
        {n: dataclasses.replace(c, activation=None) for n, c in w8a8.choices.items()}
    )
    result, report = run(engine, plan, tmp_path / "weights.onnx")
    assert report.passed, report.failures
    graph = onnx.load(str(result.path)).graph
    written = collections.Counter(n.op_type for n in graph.node)
    assert written["HardSigmoid"] == 2 and not written.keys() & {"Clip", "Div", "Add"}, written
    alphas = sorted(
        next(a.f for a in n.attribute if a.name == "alpha")
        for n in graph.node if n.op_type == "HardSigmoid"
    )  # fmt: skip
    assert alphas == sorted(float(np.float32(a)) for a in ALPHAS)
    betas = {a.f for n in graph.node if n.op_type == "HardSigmoid" for a in n.attribute
             if a.name == "beta"}  # fmt: skip
    assert betas == {0.5}
    assert any("2 x * HardSigmoid(x) pair(s) left float" in n for n in result.notes), result.notes
    read = {i for n in graph.node for i in n.input}
    assert not [t.name for t in graph.initializer if t.name not in read]  # nothing left over


def test_a_pair_after_a_learnable_affine_block_is_rewritten() -> None:
    """PP-OCRv5's pairs read ``Identity(w0 * conv + w1)`` (scalar weights, no declared types):
    before, the input's type was known only from a layer right before, and none was
    rewritten."""
    mk = helper.make_node
    vi = helper.make_tensor_value_info
    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    scalars = [numpy_helper.from_array(np.array(v, np.float32), k)
               for k, v in (("w0", 1.5), ("w1", -0.25))]  # fmt: skip
    g = helper.make_graph(
        [mk("Conv", ["x", "w"], ["c"]), mk("Mul", ["w0", "c"], ["s"]), mk("Add", ["s", "w1"], ["a"]),
         mk("Identity", ["a"], ["i"]), mk("HardSigmoid", ["i"], ["g"], alpha=1 / 6, beta=0.5),
         mk("Mul", ["i", "g"], ["y"])],
        "affine_pair", [vi("x", TensorProto.FLOAT, [1, 3, 4, 4])], [vi("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [w, *scalars],
    )  # fmt: skip
    m = builders.model(g, 11)
    x = np.random.default_rng(1).normal(0, 3, (1, 3, 4, 4)).astype(np.float32)
    want = _ort(m, x)
    assert decompose_hardsigmoid_mul(m) == 1
    assert [n.op_type for n in m.graph.node][-4:] == ["Add", "Clip", "Mul", "Div"]
    assert np.abs(_ort(m, x) - want).max() <= 1e-5 * np.abs(want).max()
