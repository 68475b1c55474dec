"""A Relu read only by an integer quantizer is folded into the quantizer's Clip
(engine/relu_fold.py): the same numbers as the graph with it, bit for bit."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.engine.relu_fold import fold_relus
from bitlens.core.formats.families.int_activation import qdq_nodes
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.engine_models import small_cnn


def _quantized_relu(extra_output: bool = False) -> onnx.ModelProto:
    """x -> Relu -> the engine's int-q quantizer (fed scale, zero point, top) -> y."""
    nodes, params = qdq_nodes("r", "y", "t")
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(n, f32, None) for n in ("x", *params)]
    outputs = [helper.make_tensor_value_info("y", f32, None)]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("r", f32, None))
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), *nodes], "g", inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(["y"], feeds)[0]


@pytest.mark.parametrize("zq,top", [(0, 255), (128, 255), (255, 255), (3, 15), (20, 15)])
def test_the_folded_quantizer_equals_relu_then_quantizer_in_onnx_runtime(zq: int, top: int) -> None:
    rng = np.random.default_rng(zq + top)
    x = np.concatenate([
        rng.normal(0, 3, 4000), [0.0, -0.0, -1e-30, 1e-30, -np.inf, np.inf, 1e30, -1e30],
        np.arange(-40, 40) * 0.25,  # halves: round half to even, both signs
    ]).astype(np.float32)  # fmt: skip
    scalar = lambda v: np.array(v, np.float32)  # noqa: E731
    feeds = {"x": x, "t__scale": scalar(0.5), "t__zq": scalar(zq), "t__top": scalar(top)}
    plain = _quantized_relu()
    folded = _quantized_relu()
    assert fold_relus(folded.graph, keep={"y"}) == ["r"]
    assert "Relu" not in {n.op_type for n in folded.graph.node}
    np.testing.assert_array_equal(_run(folded, feeds), _run(plain, feeds))


def test_a_relu_whose_output_is_kept_or_read_elsewhere_stays() -> None:
    kept = _quantized_relu()
    assert fold_relus(kept.graph, keep={"y", "r"}) == []
    fetched = _quantized_relu(extra_output=True)  # an output not in keep: dropped with it
    assert fold_relus(fetched.graph, keep={"y"}) == ["r"]
    assert [v.name for v in fetched.graph.output] == ["y"]
    read = _quantized_relu()
    read.graph.node.append(helper.make_node("Neg", ["r"], ["n"]))
    assert fold_relus(read.graph, keep={"y"}) == []


def test_the_engine_folds_relus_and_gives_the_same_evaluations() -> None:
    loaded = from_proto(small_cnn())
    data = Dataset.random(loaded.info, n=4, seed=3, dims={"N": 2})
    fast = Engine(loaded, data, device="cpu")
    slow = Engine(loaded, data, device="cpu")
    slow.fold_relus = False
    base = Plan.preset(loaded.info, "W8A8")
    names = [la.name for la in loaded.info.layers]
    plans = [
        base,
        base.with_choices({names[0]: LayerChoice.of("int4 sym ch", "uint8 asym")}),
        base.with_choices({names[1]: LayerChoice.of("int8 sym ch", "int8 sym")}),
        base.with_choices({names[1]: LayerChoice.of("int2 sym ch", "uint8 asym")}),
        Plan.preset(loaded.info, "W4A8"),
        base.with_target("none"),
    ]
    for plan in plans:  # in turn: the later ones start from kept values at the cuts
        assert fast.evaluate(plan) == slow.evaluate(plan)
        got, want = fast.run_outputs(plan), slow.run_outputs(plan)
        for name in want:
            for g, w in zip(got[name], want[name], strict=True):
                np.testing.assert_array_equal(g, w)
    relus = lambda e: sum(n.op_type == "Relu" for n in e.simulation(base)[0].model.graph.node)  # noqa: E731
    assert relus(fast) < relus(slow)


def test_a_graph_with_nothing_to_fold_is_left_without_indexing_its_readers(monkeypatch) -> None:
    """No Relu (PP-OCRv4 rec's HardSwish blocks), or no quantizer (every float graph): the
    graph comes back untouched and its readers are not indexed (10-20 ms of each of PP-OCRv4
    rec's simulation graphs, docs/benchmarks.md "openslack, session 16")."""
    from bitlens.core.engine import relu_fold

    read: list[str] = []
    real = relu_fold.node_reads
    monkeypatch.setattr(relu_fold, "node_reads", lambda n: read.append(n.name) or real(n))
    quantized = _quantized_relu()
    no_relu = onnx.ModelProto()
    no_relu.CopyFrom(quantized)
    no_relu.graph.node[0].op_type = "Sigmoid"  # x -> Sigmoid -> the quantizer
    f32 = TensorProto.FLOAT
    float_graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Exp", ["r"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", f32, None)],
        [helper.make_tensor_value_info("y", f32, None)],
    )
    for graph in (no_relu.graph, float_graph):
        before = graph.SerializeToString()
        assert fold_relus(graph, set()) == []
        assert graph.SerializeToString() == before
    assert read == []
    assert fold_relus(quantized.graph, set()) == ["r"]  # and a foldable one still folds
    assert read
