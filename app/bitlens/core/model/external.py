"""Reading tensors stored outside the .onnx file, safely.

A model names each external tensor's file with a ``location`` relative to
the model's folder. A hostile or careless file could point anywhere (an
absolute path, ``../../etc/passwd``, a symlink leading out), so every
location is checked before any byte is read, and the whole load is refused
if one escapes the model's folder. Small tensors are read into the in-memory proto at
load; large ones (MAP_MIN_BYTES and up) stay where they are and are read
through read-only memory maps (:func:`map_tensor`), so opening a model with
gigabytes of external weights holds only the pages being read, and the
kernel can drop them again. :func:`iter_external_data` reads the rest into
the proto when something needs the whole model in memory (the exporter).
The user's files are only ever opened for reading.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Generator, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import onnx
from onnx.helper import tensor_dtype_to_np_dtype as tensor_dtype

from bitlens.core.errors import ModelLoadError
from bitlens.core.limits import check_budget
from bitlens.core.model.graph import subgraphs
from bitlens.core.model.validate import element_count, expected_raw_bytes
from bitlens.core.results import Progress, drain

READ_CHUNK = 16 << 20  # bytes read between two chances to cancel
MAP_MIN_BYTES = 1 << 20  # external tensors this large are memory-mapped, not read in


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
    if "\x00" in location:
        raise ModelLoadError(f"{what} has a location containing a NUL byte; refused")
    parts = PureWindowsPath(location).parts  # splits on both / and \
    if ".." in parts:
        raise ModelLoadError(f"{what} points outside the model's folder ({location!r}); refused")
    try:
        root = Path(os.path.realpath(base_dir))
        target = Path(os.path.realpath(root / location))
        escapes = os.path.commonpath([root, target]) != str(root)
        st = os.stat(target) if not escapes else None
    except FileNotFoundError:
        raise ModelLoadError(f"{what}: file {location[:200]!r} not found next to the model") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ModelLoadError(f"{what}: location {location[:200]!r} cannot be used ({reason})") from None
    if escapes:
        raise ModelLoadError(
            f"{what} leads outside the model's folder through a link ({location!r}); refused"
        )
    if not stat.S_ISREG(st.st_mode):  # type: ignore[union-attr]
        raise ModelLoadError(f"{what}: {location!r} is not a regular file")
    return target


def load_external_data(model: onnx.ModelProto, base_dir: Path | None, label: str) -> None:
    """Check every external location, then read the data into ``model`` in memory."""
    drain(iter_external_data(model, base_dir, label))


def iter_external_data(
    model: onnx.ModelProto, base_dir: Path | None, label: str, *, keep_large: bool = False
) -> Generator[Progress, None, None]:
    """:func:`load_external_data` as a job: yields after each chunk it reads, so a window
    job reading gigabytes of weights can be cancelled between chunks. ``keep_large``:
    check every tensor, but leave those of MAP_MIN_BYTES and more where they are (read
    them with :func:`map_tensor`)."""
    tensors = external_tensors(model)
    if not tensors:
        return
    if base_dir is None:
        raise ModelLoadError(
            f"{label}: tensor {tensors[0].name!r} is stored in an external file, "
            "but the model has no folder to read it from"
        )
    # All locations and sizes first: an escaping location or a size that does not match
    # refuses the load before any read.
    plans = [_checked(t, resolve_location(t, base_dir, label), label) for t in tensors]
    if keep_large:  # main-graph initializers only: the ones weights and their readers map
        main = list(model.graph.initializer)  # alive while their ids are compared
        mappable = {id(t) for t in main}
        plans = [p for p in plans if p[3] < MAP_MIN_BYTES or id(p[0]) not in mappable]
    total = sum(n for _t, _target, _offset, n, _what in plans)
    done = 0
    for tensor, target, offset, n, what in plans:
        data = bytearray(n)
        view = memoryview(data)
        got = 0
        try:
            with open(target, "rb") as fh:
                fh.seek(offset)
                while got < n:
                    k = fh.readinto(view[got : got + READ_CHUNK])
                    if not k:
                        break
                    got += k
                    done += k
                    yield Progress(done, total, f"reading external data ({target.name})")
        except OSError as exc:
            raise ModelLoadError(f"{what} cannot be read: {exc.strerror or exc}") from None
        if got != n:
            raise ModelLoadError(f"{what}: the file ended after {got} of {n} bytes")
        del view
        tensor.raw_data = bytes(data)
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def map_tensor(tensor: onnx.TensorProto, base_dir: Path, label: str) -> np.ndarray:
    """A read-only memory map of an external tensor's values (its stored dtype and shape;
    ONNX stores them little-endian). Checked as at load; nothing is read until used."""
    _t, target, offset, n, what = _checked(tensor, resolve_location(tensor, base_dir, label), label)
    dtype = np.dtype(tensor_dtype(tensor.data_type)).newbyteorder("<")
    shape = tuple(int(d) for d in tensor.dims)
    if n == 0:
        return np.empty(shape, dtype)
    try:
        values = np.memmap(target, dtype=dtype, mode="r", offset=offset, shape=shape)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{what} cannot be mapped: {exc}") from None
    return values.view(np.ndarray) if dtype.isnative else values.astype(dtype.newbyteorder("="))


def release_pages(values: np.ndarray) -> bool:
    """Drop the resident pages of an array :func:`map_tensor` returned (they are read again
    from the page cache when next used), so weights read once, to quantize them or to run
    the float model, do not stay in the process's memory. False for any other array."""
    base = values
    while base is not None:
        mm = getattr(base, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            if hasattr(mmap, "MADV_DONTNEED"):
                try:
                    mm.madvise(mmap.MADV_DONTNEED)
                except (OSError, ValueError):
                    return False
                return True
            return False
        base = getattr(base, "base", None)
    return False


def is_external(tensor: onnx.TensorProto | onnx.SparseTensorProto) -> bool:
    return getattr(tensor, "data_location", None) == onnx.TensorProto.EXTERNAL


def _checked(
    tensor: onnx.TensorProto, target: Path, label: str
) -> tuple[onnx.TensorProto, Path, int, int, str]:
    """Where the tensor's bytes are, after checking the declared size against its shape,
    the file and the memory budget: (tensor, file, offset, length, description)."""
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
        raise ModelLoadError(
            f"{what} lies past the end of the file ({offset} + {length} bytes in a file of "
            f"{size}; truncated?)"
        )
    n = size - offset if length is None else length
    expected = expected_raw_bytes(tensor.data_type, element_count(tensor.dims))
    if expected is None:
        raise ModelLoadError(f"{what}: string tensors cannot be stored externally")
    if n != expected:
        declared = "declares" if length is not None else "has"
        raise ModelLoadError(
            f"{what} {declared} {n} bytes, expected {expected} for shape {list(tensor.dims)}"
        )
    check_budget(n, what, ModelLoadError)
    return tensor, target, offset, n, what
