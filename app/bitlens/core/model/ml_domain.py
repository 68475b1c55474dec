"""Operators of the ``ai.onnx.ml`` domain: what Bitlens leaves as they are, said plainly.

Models converted from scikit-learn, LightGBM or XGBoost (skl2onnx, onnxmltools) compute
with ``ai.onnx.ml`` operators (LinearClassifier, TreeEnsembleClassifier, Scaler, ZipMap...;
https://onnx.ai/onnx/operators/index_ml.html). Their parameters are attributes, not weight
tensors a layer reads, so Bitlens has no format to give them; without a word the user sees an
empty layer table. Such a file may even declare no ONNX-domain opset at all (ONNX Runtime's
own ``logreg_iris.onnx`` declares only ``ai.onnx.ml``), which is valid when no node needs one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import onnx

from bitlens.core.model.graph import subgraphs
from bitlens.core.model.tensors import is_tensor_value
from bitlens.core.model.types import TensorInfo

ML_DOMAIN = "ai.onnx.ml"


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for _, g in subgraphs(node):
            yield from _nodes(g)


def uses_onnx_domain(model: onnx.ModelProto) -> bool:
    """Whether any node, in any subgraph, is an operator of the default ONNX domain."""
    return any(n.domain in ("", "ai.onnx") for n in _nodes(model.graph))


def ml_ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in _nodes(model.graph) if n.domain == ML_DOMAIN)


def note(ops: Counter[str], float_layers: int) -> str | None:
    if not ops:
        return None
    kinds = ", ".join(op for op, _ in ops.most_common(4)) + (", ..." if len(ops) > 4 else "")
    n = sum(ops.values())
    what = f"{n} {ML_DOMAIN} operator{'s' if n > 1 else ''} ({kinds})"
    if float_layers:
        return (
            f"{what} {'stays float: its' if n == 1 else 'stay float: their'} parameters are "
            "attributes, not weights Bitlens can "
            f"quantize; only the {float_layers} ONNX-domain layer(s) are listed"
        )
    return (
        f"the model computes only with {what}, whose parameters are "
        "attributes, not weights; Bitlens quantizes ONNX-domain Conv, Gemm, MatMul, Gather "
        "and RNN layers, and this model has none"
    )


def non_tensor_outputs_note(outputs: tuple[TensorInfo, ...]) -> str | None:
    """What is left out of every output comparison: a ZipMap's sequence of maps, any other
    sequence, map or optional output."""
    left = [o for o in outputs if not is_tensor_value(o)]
    if not left:
        return None
    named = ", ".join(f"{o.name!r} ({o.dtype})" for o in left)
    kept = [o.name for o in outputs if is_tensor_value(o)]
    rest = f"; errors are measured on {', '.join(map(repr, kept))}" if kept else ""
    return f"output(s) {named} are not tensors and are not compared{rest}"
