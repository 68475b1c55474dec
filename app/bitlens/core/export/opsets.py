"""Which opset an export needs, upgrading the model only when it must, and verified.

The export keeps the model's own opset whenever that opset already carries
every operator and type the plan needs (folded weight subgraphs need 13,
fp8 19, int16/int4 QuantizeLinear and blocked scales 21, int2 25). Otherwise
it converts the model with :mod:`onnx.version_converter` to opset 21 (what
ONNX Runtime 1.20 and later run), or 25 when native int2 is asked for, and
checks that the converted float model gives bit-identical outputs before
using it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from bitlens.core.errors import ExportError

DEFAULT_TARGET = 21
INT2_TARGET = 25
MAX_SUPPORTED = 25

# Oldest ONNX Runtime (CPU) measured to run each opset (FACTS.md: 1.20 runs 21, 1.24 runs 25).
_OPSET_MIN_ORT = ((21, "1.20"), (25, "1.24"))


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def min_ort_for_opset(opset: int) -> str:
    for ceiling, version in _OPSET_MIN_ORT:
        if opset <= ceiling:
            return version
    raise ExportError(f"opset {opset} is newer than any measured ONNX Runtime supports")


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def choose_target(current: int, needed: int, forced: int | None = None) -> int:
    """The opset to export at: the model's own if it suffices, else 21 (or 25)."""
    if forced is not None:
        if forced < max(current, needed):
            raise ExportError(
                f"opset {forced} is too old: the model is opset {current} and the plan needs {needed}"
            )
        if forced > MAX_SUPPORTED:
            raise ExportError(f"opset {forced} is newer than the supported {MAX_SUPPORTED}")
        return forced
    if current >= needed:
        return current
    return DEFAULT_TARGET if needed <= DEFAULT_TARGET else INT2_TARGET


def _run(model: onnx.ModelProto, feeds: Sequence[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [sess.run(None, f) for f in feeds]


def convert(
    model: onnx.ModelProto, target: int, feeds: Sequence[dict[str, np.ndarray]]
) -> onnx.ModelProto:
    """``model`` at opset ``target``; its outputs on ``feeds`` must not change by one bit."""
    try:
        converted = onnx.version_converter.convert_version(model, target)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"cannot upgrade the model from opset {default_opset(model)} to {target}: {first}"
        ) from exc
    converted.ir_version = max(model.ir_version, ir_version_for(converted))
    try:
        before, after = _run(model, feeds), _run(converted, feeds)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"the model upgraded to opset {target} does not run: {first}") from exc
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        for name, x, y in zip((o.name for o in model.graph.output), b, a, strict=True):
            if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
                raise ExportError(
                    f"upgrading the model to opset {target} changed output {name!r} on sample {i}; "
                    "export at the model's own opset instead (a format needing a newer opset "
                    "cannot be exported for this model)"
                )
    return converted


def ir_version_for(model: onnx.ModelProto) -> int:
    """The oldest IR version that carries the model's opsets."""
    ids = [helper.make_opsetid(o.domain, o.version) for o in model.opset_import]
    return int(helper.find_min_ir_version_for(ids, ignore_unknown=True))
