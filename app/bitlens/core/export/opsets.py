"""Which opset an export needs, upgrading the model only when it must, and verified.

The export keeps the model's own opset whenever that opset already carries
every operator and type the plan needs (folded weight subgraphs need 13,
fp8 19, int16/int4 QuantizeLinear and blocked scales 21, int2 25). Otherwise
it converts the model with :mod:`onnx.version_converter` to the lowest opset
the plan needs, and checks that the converted float model gives
bit-identical outputs before using it; when a conversion fails or changes an
output (the converter rewrites some operators between versions), the next
candidates up to 21 (what ONNX Runtime 1.20 and later run) are tried in
turn, so the user never has to guess an opset. All of this needs only the
model, the plan and a couple of inputs: :func:`prepare` runs it before
calibration, so a model that cannot be exported fails in seconds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from onnx.onnx_cpp2py_export import version_converter as _cpp_converter

from bitlens.core.errors import ExportError
from bitlens.core.export import piecewise, skeleton

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


def candidates(current: int, needed: int, forced: int | None = None) -> list[int]:
    """Opsets to try, in order: the model's own if it suffices, else the lowest the plan
    needs, then newer ones up to 21 (25 only when the plan needs it)."""
    if forced is not None:
        if forced < max(current, needed):
            raise ExportError(
                f"opset {forced} is too old: the model is opset {current} and the plan needs "
                f"{needed}; leave --opset out to let Bitlens choose"
            )
        if forced > MAX_SUPPORTED:
            raise ExportError(f"opset {forced} is newer than the supported {MAX_SUPPORTED}")
        return [forced]
    if current >= needed:
        return [current]
    ceiling = DEFAULT_TARGET if needed <= DEFAULT_TARGET else INT2_TARGET
    return list(range(needed, ceiling + 1))


def choose_target(current: int, needed: int, forced: int | None = None) -> int:
    """The first opset :func:`candidates` offers (no conversion attempted)."""
    return candidates(current, needed, forced)[0]


def prepare(
    model: onnx.ModelProto,
    needed: int,
    forced: int | None,
    feeds: Sequence[dict[str, np.ndarray]],
    serialize: Callable[[], bytes] | None = None,
) -> tuple[int, onnx.ModelProto | None, tuple[str, ...]]:
    """(opset, the converted model or None when the model's own opset serves, notes).

    Tries each candidate in turn; raises one message naming every attempt when none works.
    ``serialize``: the whole model's bytes where ``model`` leaves tensors out
    (LoadedModel.serialized); ``model`` itself is only read for its opsets and outputs.
    """
    current = default_opset(model)
    tried: list[str] = []
    source = _Source(model, feeds, serialize)  # serialized and run once for every candidate
    for target in candidates(current, needed, forced):
        if target == current:
            return target, None, ()
        try:
            converted = convert(model, target, feeds, source)
        except ExportError as exc:
            tried.append(f"{target}: {exc}")
            continue
        notes = [f"upgraded from opset {current} to {target} (outputs verified unchanged)"]
        if tried:
            notes.append("; ".join(f"opset {t}" for t in tried))
        return target, converted, tuple(notes)
    raise ExportError(
        f"the plan needs opset {needed} or newer (the model is {current}) and no upgrade keeps "
        "the model's outputs: " + "; ".join(f"opset {t}" for t in tried)
    )


def _run(data: bytes | str, feeds: Sequence[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """The outputs of the model ``data`` holds (bytes) or names (a path) on each feed."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    return [sess.run(None, f) for f in feeds]


class _Source:
    """The model being upgraded, serialized once, and its outputs, computed once: the
    converter and both verification sessions read bytes, and serializing a 54 MB model
    costs 0.2-0.4 s each time (``version_converter.convert_version`` serializes its input
    and parses its output; the converter itself works on bytes)."""

    def __init__(
        self,
        model: onnx.ModelProto,
        feeds: Sequence[dict[str, np.ndarray]],
        serialize: Callable[[], bytes] | None = None,
    ):
        self.model, self.feeds = model, feeds
        self._serialize = serialize if serialize is not None else model.SerializeToString
        self._data: bytes | None = None
        self._outputs: list[list[np.ndarray]] | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self._serialize()
        return self._data

    def outputs(self) -> list[list[np.ndarray]]:
        if self._outputs is None:
            self._outputs = _run(self.data, self.feeds)
        return self._outputs

    def drop_data(self) -> None:
        """Forget the serialized model (serialized again if another candidate needs it)."""
        self._data = None


def convert(
    model: onnx.ModelProto,
    target: int,
    feeds: Sequence[dict[str, np.ndarray]],
    source: _Source | None = None,
) -> onnx.ModelProto:
    """``model`` at opset ``target``; its outputs on ``feeds`` must not change by one bit.
    ``source``: ``model`` serialized and run already (for several targets)."""
    source = source if source is not None else _Source(model, feeds)
    # One model's bytes and one session at a time (on a 54 MB model, holding the source's
    # bytes, the converted bytes, the converted proto and a session together took the
    # preflight to 334 MiB above the interpreter): the source runs first, its bytes are
    # dropped once converted, and the converted ones once verified.
    try:
        before = source.outputs()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"the model at its own opset does not run: {first}") from exc
    try:
        # what onnx.version_converter.convert_version does, minus serializing the model
        # again (https://github.com/onnx/onnx/blob/main/onnx/version_converter.py)
        # its large tensors left out (skeleton.py: the converter holds the interpreter lock)
        converted = skeleton.convert_model(source.data, target, _convert_bytes)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"cannot upgrade the model from opset {default_opset(model)} to {target}: {first}"
        ) from exc
    source.drop_data()
    _restore_declared_shapes(model, converted)
    converted.ir_version = max(model.ir_version, ir_version_for(converted))
    # run from a file written a node at a time (piecewise.py: one SerializeToString held the
    # interpreter lock ~20 ms on PP-OCRv4 rec, and the bytes stayed in memory beside the proto)
    with tempfile.TemporaryDirectory(prefix="bitlens-convert-") as tmp:
        path = os.path.join(tmp, "converted.onnx")
        with open(path, "wb") as f:
            piecewise.write(converted, f)
        try:
            after = _run(path, feeds)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(
                f"the model upgraded to opset {target} does not run: {first}"
            ) from exc
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        for name, x, y in zip((o.name for o in model.graph.output), b, a, strict=True):
            if x.shape != y.shape or not np.array_equal(x, y, equal_nan=True):
                raise ExportError(
                    f"upgrading the model to opset {target} changed output {name!r} on sample {i}; "
                    "export at the model's own opset instead (a format needing a newer opset "
                    "cannot be exported for this model)"
                )
    return converted


def _restore_declared_shapes(source: onnx.ModelProto, converted: onnx.ModelProto) -> bool:
    """Put back the source's declared type of each main-graph input and output that the
    converter left with no shape at all; whether any was. Its Softmax adapter (opset 11 to
    13, an axis other than the last) drops the output's shape when the declared one
    contradicts the inferred one: ocrspine's PP-OCRv5 recognizer declares its 3-D output
    as ``shape {}`` (rank 0), and the export then failed the ONNX checker, which requires
    a shape on the main graph's inputs and outputs."""
    declared = {vi.name: vi for vi in (*source.graph.input, *source.graph.output)}
    restored = False
    for vi in (*converted.graph.input, *converted.graph.output):
        src = declared.get(vi.name)
        if src is None or vi.type.WhichOneof("value") != "tensor_type":
            continue
        if not vi.type.tensor_type.HasField("shape") and src.type.tensor_type.HasField("shape"):
            vi.type.CopyFrom(src.type)
            restored = True
    return restored


def _convert_bytes(data: bytes, target: int) -> bytes:
    return _cpp_converter.convert_version(data, target)


def ir_version_for(model: onnx.ModelProto) -> int:
    """The oldest IR version that carries the model's opsets."""
    ids = [helper.make_opsetid(o.domain, o.version) for o in model.opset_import]
    ir = int(helper.find_min_ir_version_for(ids, ignore_unknown=True))
    # model-local functions came with IR 8 (https://github.com/onnx/onnx/blob/main/docs/IR.md)
    return max(ir, 8) if model.functions else ir
