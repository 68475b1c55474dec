"""Which model outputs are class scores, so that top-1 agreement and KL mean something.

Top-1 agreement and KL read an output as scores over classes. On a sentence embedding
(paraphrase-MiniLM-L3-v2's mean-pooled [batch, 384] output) the argmax of the pooled
vector is no result at all: at W4A8 it read "50% agreement" while the cosine was 0.99.
So an output counts as class scores only on evidence: a Softmax/LogSoftmax computes it
(or a softmax written out as Exp / ReduceSum, core/softmax_pattern.py),
its name says so (logits, probs, scores, class), or a classifier head (Gemm, MatMul, or
a MatMul plus bias) computes it and the data carry labels for it. Anything else is judged
by SQNR and cosine similarity alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import onnx

from bitlens.core.softmax_pattern import softmax_written_out

# Ops that only move values around: a classifier's Gemm under a Flatten/Reshape is still a head.
_PASS_THROUGH = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
_SOFTMAX = frozenset({"Softmax", "LogSoftmax"})
_HEADS = frozenset({"Gemm", "MatMul"})
# Whole words or name parts: "logits", "class_probs", "scores", "output_prob", "cls_logit".
_SCORE_NAME = re.compile(r"logit|prob|score|class|softmax|(^|[^a-z])cls([^a-z]|$)", re.IGNORECASE)


def _producer(nodes: dict[str, onnx.NodeProto], name: str) -> str | None:
    """The op computing ``name``, through shape-only ops and a bias Add after a head."""
    seen: set[str] = set()
    node = nodes.get(name)
    while node is not None and node.op_type in _PASS_THROUGH and node.input[0] not in seen:
        seen.add(node.input[0])
        node = nodes.get(node.input[0])
    if node is not None and node.op_type == "Add":
        # MatMul + Add(bias) is how many exporters write a Linear layer.
        heads = [nodes[i] for i in node.input if i in nodes and nodes[i].op_type in _HEADS]
        if heads:
            return heads[0].op_type
    return None if node is None else node.op_type


def class_score_outputs(
    graph: onnx.GraphProto, names: Iterable[str], labelled: str | None = None
) -> frozenset[str]:
    """The outputs among ``names`` that read as class scores (see the module docstring).

    ``labelled`` is the output the data's labels belong to, if any: a Gemm/MatMul head
    counts as a classifier only with labels, since a projection to an embedding is one too.
    """
    nodes = {o: n for n in graph.node for o in n.output}
    found = set()
    for name in names:
        op = _producer(nodes, name)
        if (
            op in _SOFTMAX
            or _SCORE_NAME.search(name)
            or (name == labelled and op in _HEADS)
            or softmax_written_out(graph, nodes, name) is not None  # tf2onnx before opset 13
        ):
            found.add(name)
    return frozenset(found)


def class_score_axes(
    model: onnx.ModelProto, names: Iterable[str], labelled: str | None = None
) -> dict[str, int]:
    """Per class-score output (:func:`class_score_outputs`), the axis its classes lie on:
    the axis a Softmax/LogSoftmax computing it directly normalizes, else the last (-1).

    Top-1 agreement on an output of rank >= 3 (FSMN VAD's ``logits`` [1, T, 248], a CRNN's
    per-frame scores [T, N, C]) is counted per position over this axis. Through a
    Transpose/Reshape the Softmax's axis no longer names the same data, so it is read only
    from the output's own producer, and only from opset 13 on: before that, Softmax
    normalizes all axes from ``axis`` on flattened together
    (https://onnx.ai/onnx/operators/onnx__Softmax.html), a group that ends at the last axis.
    """
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    nodes = {o: n for n in graph.node for o in n.output}
    axes: dict[str, int] = {}
    for name in class_score_outputs(graph, names, labelled):
        written = softmax_written_out(graph, nodes, name)
        axes[name] = -1 if written is None else written
        node = nodes.get(name)
        if node is not None and node.op_type in _SOFTMAX and opset >= 13:
            for a in node.attribute:
                if a.name == "axis":
                    axes[name] = int(onnx.helper.get_attribute_value(a))
    return axes


_LABELS = frozenset({"ArgMax", "ArgMin"})


def label_outputs(graph: onnx.GraphProto, names: Iterable[str]) -> frozenset[str]:
    """The outputs among ``names`` that an ArgMax/ArgMin computes (through shape-only ops and
    Casts): class indices, whose SQNR means nothing (sudachi-b-imitator's int64 [1, 256]
    part-of-speech ids: "SQNR 38.1 dB, max abs 1" when labels 11 and 12 swapped). They are
    judged by how many positions keep the float model's label (top-1 agreement)."""
    nodes = {o: n for n in graph.node for o in n.output}
    found = set()
    for name in names:
        node, seen = nodes.get(name), set()
        while node is not None and node.op_type in _PASS_THROUGH | {"Cast"} and node.input:
            if node.input[0] in seen:
                break
            seen.add(node.input[0])
            node = nodes.get(node.input[0])
        if node is not None and node.op_type in _LABELS:
            found.add(name)
    return frozenset(found)
