"""The loader's rewrites remove nodes in place (bitlens.core.model.repeated): the nodes they
keep stay the very messages they were, not copies. Rebuilding the node list copied every
kept node at each rewrite, weights included where a file holds them in Constant nodes
(paddle2onnx's PP-OCRv4 rec: 10.8 MB in 420 Constant nodes)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.model.bn_fold import fold_batchnorms
from bitlens.core.model.folding import fold_constants
from bitlens.core.model.identity_drop import drop_identities
from bitlens.core.model.repeated import remove_where
from tests.core.engine_models import IR_VERSION


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], name=name, value=numpy_helper.from_array(value, f"{name}_v")
    )


def _model() -> onnx.ModelProto:
    """Constant weights; Conv -> BatchNormalization (folds), Identity (dropped), a Neg of a
    Constant (folds), Add of a Constant shift that every rewrite keeps."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    nodes = [
        _const("shift", np.full((1, 4, 1, 1), 0.5, f32)),
        _const("W", rng.normal(0, 0.3, (4, 3, 3, 3)).astype(f32)),
        _const("scale", np.full(4, 1.5, f32)),
        _const("bias", np.full(4, 0.1, f32)),
        _const("mean", np.full(4, 0.2, f32)),
        _const("var", np.full(4, 0.9, f32)),
        _const("c", np.full((1, 4, 1, 1), 2.0, f32)),
        helper.make_node("Neg", ["c"], ["neg_c"], name="neg"),
        helper.make_node("Conv", ["x", "W"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["conv", "scale", "bias", "mean", "var"], ["bn"], name="bn"
        ),
        helper.make_node("Identity", ["bn"], ["same"], name="identity"),
        helper.make_node("Add", ["same", "shift"], ["shifted"], name="add"),
        helper.make_node("Mul", ["shifted", "neg_c"], ["y"], name="mul"),
    ]
    g = helper.make_graph(
        nodes,
        "constants",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def test_rewrites_keep_the_nodes_they_do_not_remove() -> None:
    model = _model()
    graph = model.graph
    shift, add = graph.node[0], next(n for n in graph.node if n.name == "add")
    assert fold_batchnorms(model).folded == 1
    assert drop_identities(model) == 1
    assert fold_constants(model).nodes == 1
    ops = [n.op_type for n in graph.node]
    assert "BatchNormalization" not in ops and "Identity" not in ops and "Neg" not in ops
    # the kept messages themselves, not copies of them
    assert any(n is shift for n in graph.node) and any(n is add for n in graph.node)
    assert add.input[0] == "bn"  # the Identity's reader reads its source


def test_remove_where_equals_a_rebuild_in_order() -> None:
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], [f"y{i}"], name=f"n{i}") for i in range(9)], "g", [], []
    )
    held = list(g.node)
    drop = {0, 2, 3, 7, 8}
    want = [n.name for i, n in enumerate(held) if i not in drop]
    assert remove_where(g.node, lambda n: int(n.name[1:]) in drop) == len(drop)
    assert [n.name for n in g.node] == want
    assert all(a is b for a, b in zip(g.node, (held[i] for i in (1, 4, 5, 6)), strict=True))
