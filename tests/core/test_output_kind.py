"""Output metrics by output kind (core/output_kind.py): top-1/KL for class scores only."""

from __future__ import annotations

import json

import numpy as np
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.output_kind import class_score_outputs
from bitlens.core.plan import Plan
from tests import builders as b
from tests.core.test_cli_entry import run_cli


def _head(tail: str, out: str) -> b.onnx.ModelProto:
    """x[4,16] -> MatMul(w[16,32]) -> Add(b) -> ``tail`` -> out[4,32]

    ``tail`` is "Softmax" (a classifier), "ReduceL2-Div" (an L2-normalised embedding, as a
    sentence-transformers export ends) or "" (a bare projection: could be either)."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="proj"),
        helper.make_node("Add", ["m", "b"], ["a"]),
    ]
    if tail == "Softmax":
        nodes.append(helper.make_node("Softmax", ["a"], [out], axis=-1))
    elif tail == "ReduceL2-Div":
        nodes += [
            helper.make_node("ReduceL2", ["a"], ["n"], axes=[-1], keepdims=1),
            helper.make_node("Div", ["a", "n"], [out]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["a"], [out]))
    graph = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [4, 32])],
        [b.init("w", b.weights((16, 32), seed=1)), b.init("b", b.bias(32, seed=2))],
    )  # fmt: skip
    return b.model(graph)


def _evaluate(proto, labels: bool = False):
    model = from_proto(proto)
    data = Dataset.random(model.info, n=4, seed=0)
    if labels:
        data = Dataset(data.samples, np.arange(len(data.samples) * 4) % 32)
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    plan = Plan.preset(model.info, "W4A8")
    return engine.evaluate(plan)


def test_kinds_from_the_graph():
    assert class_score_outputs(_head("Softmax", "y").graph, ["y"]) == {"y"}
    assert class_score_outputs(_head("ReduceL2-Div", "y").graph, ["y"]) == set()
    # a bare head: a classifier only when the labels say so, or its name does
    assert class_score_outputs(_head("", "y").graph, ["y"]) == set()
    assert class_score_outputs(_head("", "y").graph, ["y"], labelled="y") == {"y"}
    for name in ("logits", "class_probs", "scores", "cls_out"):
        assert class_score_outputs(_head("", name).graph, [name]) == {name}
    assert (
        class_score_outputs(_head("", "sentence_embedding").graph, ["sentence_embedding"]) == set()
    )


def test_embedding_output_gets_cosine_not_top1():
    """Before the fix every 2-D float output got top-1 agreement and KL (MiniLM read 50%)."""
    ev = _evaluate(_head("ReduceL2-Div", "sentence_embedding"))
    out = ev.outputs["sentence_embedding"]
    assert out.top1_agreement is None and out.kl is None
    assert 0.0 < out.error.cosine <= 1.0


def test_classifier_head_keeps_top1():
    ev = _evaluate(_head("Softmax", "y"))
    assert ev.outputs["y"].top1_agreement is not None and ev.outputs["y"].kl is not None
    named = _evaluate(_head("", "logits"))
    assert named.outputs["logits"].top1_agreement is not None
    labelled = _evaluate(_head("", "y"), labels=True)
    assert labelled.outputs["y"].top1_agreement is not None
    assert "accuracy" in labelled.task_metric
    assert _evaluate(_head("", "y")).outputs["y"].top1_agreement is None


def test_cli_text_json_and_report_follow_the_kind(tmp_path):
    """`bitlens eval` text, JSON and HTML report: cosine for an embedding, never top-1."""
    emb, cls = tmp_path / "emb.onnx", tmp_path / "cls.onnx"
    b.onnx.save(_head("ReduceL2-Div", "sentence_embedding"), emb)
    b.onnx.save(_head("Softmax", "probs"), cls)
    report = tmp_path / "emb.html"
    res = run_cli("eval", str(emb), "--preset", "W4A8", "--report", str(report))
    assert res.returncode == 0, res.stderr
    line = next(s for s in res.stdout.splitlines() if s.startswith("output sentence_embedding"))
    assert "cosine" in line and "top-1" not in res.stdout
    html = report.read_text(encoding="utf-8")
    assert "cosine" in html and "top-1" not in html
    res = run_cli("eval", str(emb), "--preset", "W4A8", "--json")
    out = json.loads(res.stdout)["outputs"]
    out = out["sentence_embedding"] if isinstance(out, dict) else out[0]
    assert out["top1_agreement"] is None and out["error"]["cosine"] > 0
    res = run_cli("eval", str(cls), "--preset", "W4A8")
    assert res.returncode == 0, res.stderr
    assert "output probs:" in res.stdout and "top-1 agreement" in res.stdout
