"""Models older than opset 11, raised to opset 11 in memory when that changes no output.

Integer activations are simulated with ``Round`` and with ``Clip`` taking its range as
inputs, both from opset 11 (https://github.com/onnx/onnx/blob/main/docs/Changelog.md#Clip-11,
#Round-11). A model exported at opset 9 (PyTorch 1.x's default for years: Microsoft's AECMOS
models in the ``speechmos`` wheel; many of the ONNX model zoo's) could therefore show its
weights but failed every evaluation with 8-bit activations, the default W8A8 preset
included. The export already upgrades opsets when a plan needs it
(bitlens.core.export.opsets); here the open model is upgraded once, with
:mod:`onnx.version_converter`, and kept only when the converted model gives bit-identical
outputs on random inputs, so every number Bitlens shows is still the file's model's. The
file itself is never written.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from bitlens.core.model.graph import subgraphs
from bitlens.core.model.layers import LAYER_OPS

MIN_OPSET = 11  # the integer activation quantizers' (formats/families/integer.py)
_OTHER_AXES = 32  # a size for a dynamic axis past the batch (the input-sizes dialog's default)


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def raise_old_opset(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """``model`` at opset 11 with a note saying so, or ``model`` itself with a note saying
    why not (None when the model is already opset 11 or newer)."""
    old = default_opset(model)
    if old >= MIN_OPSET or not old:  # not old: no ONNX-domain node (only ai.onnx.ml ones)
        return model, None
    if not _has_layer_op(model.graph):  # nothing to give 8-bit activations: skip the upgrade,
        return model, None  # whose check runs the model twice (minutes for a large tree model)
    if any(_is_external(t) for t in model.graph.initializer):
        return model, _kept(old, "its weights are in external data")
    try:
        converted = onnx.version_converter.convert_version(model, MIN_OPSET)
        converted.ir_version = max(model.ir_version, _ir_for(converted))
        feeds = _random_feeds(model)
        before, after = _run(model, feeds), _run(converted, feeds)
    except Exception as exc:  # the converter and ORT raise many types; the reason is shown
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        return model, _kept(old, f"the upgrade failed: {first or type(exc).__name__}")
    if not all(_same(x, y) for x, y in zip(before, after, strict=True)):
        return model, _kept(old, "the upgraded model's outputs differ")
    return converted, (
        f"opset {old} raised to {MIN_OPSET} in memory (the file is unchanged) for the integer "
        f"activation quantizers; the upgraded model's outputs are bit-identical on random inputs"
    )


def _has_layer_op(graph: onnx.GraphProto) -> bool:
    """Whether any node, in any subgraph, is of an op type that can be a quantizable layer."""
    for node in graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type in LAYER_OPS:
            return True
        if any(_has_layer_op(g) for _, g in subgraphs(node)):
            return True
    return False


def _same(x: object, y: object) -> bool:
    """Bit-identical outputs; ORT returns non-tensor outputs as Python lists and dicts
    (onnxmltools' classifiers end in ZipMap: a sequence of maps from label to probability)."""
    if isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        return x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
    if isinstance(x, list) and isinstance(y, list):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y, strict=True))
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    return type(x) is type(y) and bool(np.array_equal(x, y, equal_nan=True))


def _kept(old: int, why: str) -> str:
    return (
        f"opset {old} kept ({why}): 8-bit activations need opset {MIN_OPSET}; weight formats "
        "and fp16 activations work"
    )


def _is_external(t: TensorProto) -> bool:
    return t.data_location == TensorProto.EXTERNAL


def _ir_for(model: onnx.ModelProto) -> int:
    ids = [helper.make_opsetid(o.domain, o.version) for o in model.opset_import]
    return int(helper.find_min_ir_version_for(ids, ignore_unknown=True))


_NUMPY = {
    TensorProto.FLOAT: np.float32,
    TensorProto.DOUBLE: np.float64,
    TensorProto.FLOAT16: np.float16,
    TensorProto.INT64: np.int64,
    TensorProto.INT32: np.int32,
    TensorProto.BOOL: np.bool_,
}


def _random_feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    inits = {t.name for t in model.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [
            d.dim_value
            if d.HasField("dim_value") and d.dim_value > 0
            else (1 if i == 0 else _OTHER_AXES)
            for i, d in enumerate(tt.shape.dim)
        ]
        dtype = _NUMPY.get(tt.elem_type)
        if dtype is None:
            raise ValueError(f"input {vi.name!r} has an element type random inputs cannot fill")
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[vi.name] = np.zeros(shape, dtype)
    return feeds


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)
