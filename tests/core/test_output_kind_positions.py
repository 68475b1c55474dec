"""One judgement of class scores for the inspector and the export's verdict (output_kind.py),
and top-1 per position for class scores of rank >= 3 (a VAD's [1, T, C], a CRNN's [T, N, C])."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import verdict
from bitlens.core.model.loader import from_proto
from bitlens.core.output_kind import class_score_axes
from bitlens.core.plan import Plan
from tests import builders as b
from tests.core.test_export_models import run


def _gemm_projection(out: str) -> onnx.ModelProto:
    """x[4,16] -> Gemm(w[16,32], b) -> out[4,32]: a projection, classifier or embedding."""
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], [out], name="proj")], "proj",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [4, 32])],
        [b.init("w", b.weights((16, 32), seed=1)), b.init("b", b.bias(32, seed=2))],
    )  # fmt: skip
    return b.model(graph)


def _frame_scores(axis: int, opset: int = 17) -> onnx.ModelProto:
    """x[1,6,16] -> MatMul(w[16,8]) -> Softmax -> logits: per-frame scores over 8 classes,
    [1, 6, 8] (axis -1) or, transposed first, [1, 8, 6] with Softmax over axis 1."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"], name="frames")]
    shape = [1, 6, 8]
    if axis == 1:
        nodes.append(helper.make_node("Transpose", ["m"], ["t"], perm=[0, 2, 1]))
        shape = [1, 8, 6]
    nodes.append(helper.make_node("Softmax", [nodes[-1].output[0]], ["logits"], axis=axis))
    graph = helper.make_graph(
        nodes, "frames",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, shape)],
        [b.init("w", b.weights((16, 8), seed=3))],
    )  # fmt: skip
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _engine(proto: onnx.ModelProto) -> Engine:
    model = from_proto(proto)
    engine = Engine(model, Dataset.random(model.info, n=4, seed=0), device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    return engine


def test_export_verdict_judges_an_embedding_by_drift(tmp_path: Path) -> None:
    """Before: the verdict read any Gemm output as classes and counted its top-1 flips,
    while the inspector (class_score_outputs) gave the same output cosine only."""
    engine = _engine(_gemm_projection("embedding"))
    assert engine.class_score_axes == {}
    _, report = run(engine, Plan.preset(engine.model.info, "W8A8"), tmp_path / "e.onnx")
    (out,) = report.outputs
    assert out.top1_agreement is None and out.top1_changes == 0
    # the same head named as scores is judged by top-1 in both places
    engine = _engine(_gemm_projection("logits"))
    assert engine.class_score_axes == {"logits": -1}
    _, report = run(engine, Plan.preset(engine.model.info, "W8A8"), tmp_path / "l.onnx")
    assert report.outputs[0].top1_agreement is not None


def test_softmax_axis_is_the_class_axis_from_opset_13() -> None:
    assert class_score_axes(_frame_scores(-1), ["logits"]) == {"logits": -1}
    assert class_score_axes(_frame_scores(1), ["logits"]) == {"logits": 1}
    # before opset 13 Softmax flattens the axes from `axis` on: read over the last
    assert class_score_axes(_frame_scores(1, opset=12), ["logits"]) == {"logits": -1}


def _reference(engine: Engine, plan: Plan, proto: onnx.ModelProto):
    """Float outputs from plain ONNX Runtime and quantized ones from the engine."""
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    idx = engine.data.evaluation
    ref = [sess.run(["logits"], engine.data.samples[i])[0] for i in idx]
    return ref, engine.run_outputs(plan, idx)["logits"]


def test_frame_scores_get_top1_per_position() -> None:
    """Before: top-1 and KL were computed for 2-D outputs only, so a [1, T, C] output of
    class scores had neither. Checked against float64 numpy over every frame."""
    for axis in (-1, 1):
        proto = _frame_scores(axis)
        engine = _engine(proto)
        plan = Plan.preset(engine.model.info, "W4A8")
        out = engine.evaluate(plan).outputs["logits"]
        ref, got = _reference(engine, plan, proto)
        r = np.concatenate(ref).astype(np.float64)
        g = np.concatenate(got).astype(np.float64)
        want = np.mean(np.argmax(r, axis=axis) == np.argmax(g, axis=axis))
        assert out.top1_agreement is not None and out.top1_agreement == want
        # KL as the 2-D metric defines it: softmax of each side's outputs over the classes
        p, q = (np.exp(v) / np.exp(v).sum(axis=axis, keepdims=True) for v in (r, g))
        kl = np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=axis))
        assert abs(out.kl - kl) < 1e-6 * max(1.0, abs(kl))


def test_verdict_counts_changes_over_the_class_axis() -> None:
    want = [np.array([[[5.0, 0.0], [0.0, 5.0], [1.0, 1.0]]], np.float32)]  # [1, C=3, T=2]
    got = [np.array([[[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]]], np.float32)]
    # axis 1: frame 0 goes from class 0 to class 1 (margin 4), frame 1 stays class 1
    assert verdict.top1_changes(want, got, 1e-3, axis=1) == (0.5, 1)
    assert verdict.looks_like_classes(want[0], True, 1)
    assert not verdict.looks_like_classes(want[0], False, 1)  # not class scores: drift only
    assert not verdict.looks_like_classes(np.zeros((2, 1), np.float32), True)  # one class
    assert verdict.looks_like_classes(np.zeros((1, 7), np.int64), False)  # labels
