"""An opset conversion of the model's skeleton: its large tensors left out, then put back.

onnx's C++ version converter (``onnx/version_converter.py``'s ``convert_version``) parses
the whole model, imports it into onnx's IR, copying every tensor, and writes it back out,
all with the interpreter lock held: on PP-OCRv4 rec (10.9 MB of Constant nodes) 66-77 ms of
CPU at its first call in a process, 120-150 ms under load, the window's longest stall of
Find Plan and export (docs/benchmarks.md, "uisearch (session 15)"). The adapters rewrite
nodes and attributes, not the values of large tensors, so the converter is given the model
with each tensor over ``MIN_BYTES`` marked as external data under a name of its own (dims and
type kept: shape inference, which some adapters read, sees the same model), 24-32 ms there,
and the values are put back where the markers come out. Small tensors (shapes, axes, scales
that an adapter may read) stay in. Where a marker does not come out exactly once, the whole
model is converted as before; the caller verifies the outputs either way (opsets.convert).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import onnx

MIN_BYTES = 1024
_MARK = "bitlens-skeleton-tensor-"
_DATA_FIELDS = (
    "raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data",
    "uint64_data",
)  # fmt: skip


def convert_model(
    data: bytes, target: int, convert_bytes: Callable[[bytes, int], bytes]
) -> onnx.ModelProto:
    """The model ``data`` holds converted to opset ``target`` by ``convert_bytes`` (the C++
    converter on bytes), its large tensors converted as markers and put back: the same
    proto as converting ``data`` whole."""
    model = onnx.ModelProto.FromString(data)
    kept = _strip(model)
    if not kept:
        return onnx.ModelProto.FromString(convert_bytes(data, target))
    out = onnx.ModelProto.FromString(convert_bytes(model.SerializeToString(), target))
    del model
    if _restore(out, kept):
        return out
    return onnx.ModelProto.FromString(convert_bytes(data, target))


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``graph`` and its subgraphs: initializers and node attributes."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def _strip(model: onnx.ModelProto) -> list[tuple[onnx.TensorProto, int, tuple[int, ...]]]:
    """Move the values of each large tensor held in the model out of it, a marker in their
    place; per marker, in order: the values (a tensor of its data fields alone), its type and
    dims."""
    kept: list[tuple[onnx.TensorProto, int, tuple[int, ...]]] = []
    for t in _tensors(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL or t.ByteSize() < MIN_BYTES:
            continue
        values = onnx.TensorProto()
        values.CopyFrom(t)
        for field, _ in values.ListFields():
            if field.name not in _DATA_FIELDS:
                values.ClearField(field.name)
        for name in _DATA_FIELDS:
            t.ClearField(name)
        t.data_location = onnx.TensorProto.EXTERNAL
        mark = t.external_data.add()
        mark.key, mark.value = "location", f"{_MARK}{len(kept)}"
        kept.append((values, t.data_type, tuple(t.dims)))
    return kept


def _restore(
    model: onnx.ModelProto, kept: list[tuple[onnx.TensorProto, int, tuple[int, ...]]]
) -> bool:
    """Put the values ``kept`` back in place of their markers (the rest of each tensor is
    the converter's, as when it converts the whole model: it drops a data_location that
    says "default"); whether each marker was found once, on a tensor of its type and dims."""
    found = [False] * len(kept)
    for t in _tensors(model.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL or len(t.external_data) != 1:
            continue
        value = t.external_data[0].value
        if not value.startswith(_MARK):
            continue
        i = int(value[len(_MARK) :]) if value[len(_MARK) :].isdigit() else len(kept)
        if i >= len(kept) or found[i]:
            return False
        values, dtype, dims = kept[i]
        if t.data_type != dtype or tuple(t.dims) != dims:
            return False  # an adapter changed the tensor itself: convert the whole model
        found[i] = True
        t.ClearField("external_data")
        t.ClearField("data_location")
        t.MergeFrom(values)
    return all(found)
