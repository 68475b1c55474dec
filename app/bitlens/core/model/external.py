"""Reading tensors stored outside the .onnx file, safely.

A model names each external tensor's file with a ``location`` relative to
the model's folder. A hostile or careless file could point anywhere (an
absolute path, ``../../etc/passwd``, a symlink leading out), so every
location is checked before any byte is read, and the whole load is refused
if one escapes the model's folder. Data are read into the in-memory proto;
the user's files are only ever opened for reading.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import onnx

from bitlens.core.errors import ModelLoadError
from bitlens.core.model.graph import subgraphs

# Element types that pack several values per byte, or have no fixed size:
# their expected byte count is not checked here.
_UNSIZED = frozenset(
    getattr(onnx.TensorProto, n)
    for n in ("STRING", "INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
    if hasattr(onnx.TensorProto, n)
)


def external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Every tensor of the model (graphs, subgraphs, attributes, functions) kept outside it."""
    found: list[onnx.TensorProto] = []
    for t in _all_tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            found.append(t)
    return found


def _all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    yield from _graph_tensors(model.graph)
    for fn in model.functions:
        for node in fn.node:
            yield from _node_tensors(node)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for s in graph.sparse_initializer:
        yield s.values
        yield s.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for s in attr.sparse_tensors:
            yield s.values
            yield s.indices
    for _, g in subgraphs(node):
        yield from _graph_tensors(g)


def _entries(tensor: onnx.TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in tensor.external_data}


def resolve_location(tensor: onnx.TensorProto, base_dir: Path, label: str) -> Path:
    """The file holding ``tensor``'s data, refused unless it lies inside ``base_dir``."""
    location = _entries(tensor).get("location", "")
    what = f"{label}: external data of tensor {tensor.name!r}"
    if not location:
        raise ModelLoadError(f"{what} has no location")
    if (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or PureWindowsPath(location).drive
        or location.startswith(("/", "\\"))
    ):
        raise ModelLoadError(f"{what} uses an absolute path {location!r}; refused")
    parts = PureWindowsPath(location).parts  # splits on both / and \
    if ".." in parts:
        raise ModelLoadError(f"{what} points outside the model's folder ({location!r}); refused")
    root = Path(os.path.realpath(base_dir))
    target = Path(os.path.realpath(root / location))
    if os.path.commonpath([root, target]) != str(root):
        raise ModelLoadError(
            f"{what} leads outside the model's folder through a link ({location!r}); refused"
        )
    if not target.exists():
        raise ModelLoadError(f"{what}: file {location!r} not found next to the model")
    if not target.is_file():
        raise ModelLoadError(f"{what}: {location!r} is not a file")
    return target


def load_external_data(model: onnx.ModelProto, base_dir: Path | None, label: str) -> None:
    """Check every external location, then read the data into ``model`` in memory."""
    tensors = external_tensors(model)
    if not tensors:
        return
    if base_dir is None:
        raise ModelLoadError(
            f"{label}: tensor {tensors[0].name!r} is stored in an external file, "
            "but the model has no folder to read it from"
        )
    # All locations first: an escaping location refuses the load before any read.
    targets = [resolve_location(t, base_dir, label) for t in tensors]
    for tensor, target in zip(tensors, targets, strict=True):
        tensor.raw_data = _read(tensor, target, label)
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def _read(tensor: onnx.TensorProto, target: Path, label: str) -> bytes:
    entries = _entries(tensor)
    what = f"{label}: external data of tensor {tensor.name!r} in {target.name!r}"
    try:
        offset = int(entries.get("offset", "0") or 0)
        length = int(entries["length"]) if entries.get("length") else None
    except ValueError:
        raise ModelLoadError(f"{what} has a malformed offset or length") from None
    if offset < 0 or (length is not None and length < 0):
        raise ModelLoadError(f"{what} has a negative offset or length")
    size = target.stat().st_size
    if offset > size or (length is not None and offset + length > size):
        raise ModelLoadError(f"{what} lies past the end of the file (truncated?)")
    try:
        with open(target, "rb") as fh:
            fh.seek(offset)
            data = fh.read() if length is None else fh.read(length)
    except OSError as exc:
        raise ModelLoadError(f"{what} cannot be read: {exc.strerror or exc}") from None
    expected = _expected_bytes(tensor)
    if expected is not None and len(data) != expected:
        raise ModelLoadError(
            f"{what} holds {len(data)} bytes, expected {expected} for shape {list(tensor.dims)}"
        )
    return data


def _expected_bytes(tensor: onnx.TensorProto) -> int | None:
    if tensor.data_type in _UNSIZED:
        return None
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except (KeyError, ValueError, TypeError):
        return None
    return math.prod(int(d) for d in tensor.dims) * int(itemsize)
