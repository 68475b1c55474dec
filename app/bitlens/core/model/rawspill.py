"""Large float weights written from the file's bytes to a memory-mapped scratch file at load.

The engine feeds every weight to its sessions as an array, and holds the large ones in a
read-only memory map of an anonymous scratch file (bitlens.core.engine.weightspill), so
that they live in the page cache rather than in the process's memory. Decoding them from
the parsed protobuf first (protobuf's ``raw_data`` copies the bytes, then numpy holds
them) cost 17-27 ms of CPU for ddddocr's 54 MB ``common.onnx`` before they were written
out; the very same bytes are in the file the loader has just read. Here each large float
initializer's ``raw_data`` is written from the file's bytes (their places in the file come
from the wire-format walk, :mod:`bitlens.core.model.wire`) while the loader still holds
them, and the model hands out views of the map instead of decoding.

Only what the loader can vouch for is used: a main-graph initializer of float32 or
float64 (the types :meth:`LoadedModel.weight` returns as stored), stored little-endian as
ONNX's ``raw_data`` is (https://onnx.ai/onnx/repo-docs/IR.html, "raw_data"), on a
little-endian machine, whose name is defined once, and that nothing in the loader rewrote
afterwards (folded BatchNormalizations, an opset upgrade): :func:`adopt` takes the names
of those and checks each tensor's type and shape once more.

The parsed proto then need not hold those bytes a second time (54 MB on ``common.onnx``,
for as long as the model is open, an export included): :func:`detach` turns each adopted
initializer into an external-data reference to its place in the model's own file (ONNX's
``location``/``offset``/``length``, https://onnx.ai/onnx/repo-docs/ExternalData.html), so
that everything that already handles large external tensors (sizes, copies, ONNX Runtime
opened from the file) handles these alike; the model itself serves their values from the
scratch map (:func:`detached_values`) and writes them back into a proto from there
(:func:`reattach`), so a file changed on disk after the load is never read.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from bitlens.core.model.external import is_external, release_pages

# Smaller tensors stay in the proto (decoded when asked for); the engine's weightspill
# uses the same bound. 64 KiB, not the 1 MiB it was: a conv model's filters are mostly
# 64 KiB-1 MiB each (the benchmark CRNN's 31 largest hold 10.4 of its 10.8 MiB of weights,
# none 1 MiB), and under 1 MiB they were held twice, in the proto and decoded for the
# engine's feeds: its peak RSS 224 -> 211 MiB (docs/benchmarks.md, "memrow, session 14");
# a 200-layer stack of 256 KiB MatMul weights 1.26x -> 0.84x its bound ("depthmem").
# Scalars and per-channel vectors stay below it, where one page of the map would hold many.
RAW_SPILL_MIN_BYTES = 64 << 10
_ALIGN = 64  # each weight starts on a cache line (ORT's kernels read with SIMD loads)
_TYPES = {onnx.TensorProto.FLOAT: np.dtype("<f4"), onnx.TensorProto.DOUBLE: np.dtype("<f8")}


@dataclass(frozen=True)
class RawWeight:
    """One initializer's values in the scratch map, and what it was when written."""

    values: np.ndarray  # read-only view of the map, in the tensor's shape
    data_type: int
    dims: tuple[int, ...]
    start: int = 0  # where its raw_data starts in the model's file


def spill_raw(
    data, graph: onnx.GraphProto, spans: Sequence[tuple[int, int] | None] | None
) -> dict[str, RawWeight]:
    """Write the ``raw_data`` of ``graph``'s large float initializers from ``data`` (the
    bytes ``graph`` was parsed from; ``spans`` from wire.initializer_raw_spans) to one
    temporary file mapped read-only once; their views by name. Nothing when the walk did
    not read the bytes (``spans`` None) or they do not match the parsed initializers."""
    if spans is None or sys.byteorder != "little" or len(spans) != len(graph.initializer):
        return {}
    counts: dict[str, int] = {}
    for t in graph.initializer:
        counts[t.name] = counts.get(t.name, 0) + 1
    chosen: list[tuple[onnx.TensorProto, tuple[int, int]]] = []
    for t, span in zip(graph.initializer, spans, strict=True):
        dtype = _TYPES.get(t.data_type)
        if span is None or dtype is None or counts[t.name] != 1 or is_external(t):
            continue
        size = span[1] - span[0]
        if size < RAW_SPILL_MIN_BYTES or size != dtype.itemsize * int(np.prod(t.dims)):
            continue
        chosen.append((t, span))
    if not chosen:
        return {}
    offset_in_file = {t.name: span[0] for t, span in chosen}
    src = memoryview(data).cast("B")
    places: list[tuple[onnx.TensorProto, int, int]] = []
    try:
        with tempfile.TemporaryFile(prefix="bitlens-weights-") as fh:
            for t, (start, end) in chosen:
                fh.write(b"\0" * (-fh.tell() % _ALIGN))
                places.append((t, fh.tell(), end - start))
                fh.write(src[start:end])  # the file's bytes, not a decoded copy
            fh.flush()
            whole = np.memmap(fh, dtype=np.uint8, mode="r")  # the map keeps its own descriptor
    except OSError:  # no room for the scratch file: the weights are decoded when asked for
        return {}
    finally:
        src.release()
    out: dict[str, RawWeight] = {}
    for t, offset, size in places:
        dims = tuple(int(d) for d in t.dims)
        view = whole[offset : offset + size].view(_TYPES[t.data_type]).reshape(dims)
        out[t.name] = RawWeight(view, t.data_type, dims, offset_in_file[t.name])
    return out


def adopt(
    spilled: dict[str, RawWeight], graph: onnx.GraphProto, rewritten: Collection[str]
) -> dict[str, np.ndarray]:
    """The spilled values still valid for ``graph`` after the loader's rewrites: not among
    ``rewritten`` (names whose values the loader replaced), still one raw-data initializer
    of the same type and shape. Views are read-only and in the stored dtype."""
    if not spilled:
        return {}
    inits: dict[str, onnx.TensorProto | None] = {}
    for t in graph.initializer:
        if t.name in spilled:
            inits[t.name] = None if t.name in inits else t  # defined twice: not vouched
    out: dict[str, np.ndarray] = {}
    for name, raw in spilled.items():
        t = inits.get(name)
        if t is None or name in rewritten or is_external(t) or not t.HasField("raw_data"):
            continue
        if t.data_type != raw.data_type or tuple(t.dims) != raw.dims:
            continue
        out[name] = raw.values
    return out


@dataclass(frozen=True)
class Detached:
    """An initializer whose ``raw_data`` the parsed proto no longer holds: its values in the
    scratch map, the external-data entries that stand for them, and what it was."""

    values: np.ndarray
    entries: tuple[tuple[str, str], ...]
    had_location: bool  # whether the tensor set data_location (to DEFAULT) in the file


def detach(
    graph: onnx.GraphProto,
    adopted: dict[str, np.ndarray],
    spilled: dict[str, RawWeight],
    location: str,
) -> dict[str, Detached]:
    """Replace the ``raw_data`` of ``graph``'s ``adopted`` initializers (:func:`adopt`'s
    result) by references to their bytes in the model's file, named ``location`` relative
    to its folder; what :func:`reattach` needs to put them back, by name."""
    out: dict[str, Detached] = {}
    for t in graph.initializer:
        values = adopted.get(t.name)
        if values is None:
            continue
        start = spilled[t.name].start
        entries = (("location", location), ("offset", str(start)), ("length", str(values.nbytes)))
        had_location = t.HasField("data_location")
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        for key, value in entries:
            e = t.external_data.add()
            e.key, e.value = key, value
        out[t.name] = Detached(values, entries, had_location)
    return out


def detached_values(
    tensor: onnx.TensorProto | onnx.SparseTensorProto, detached: dict[str, Detached]
) -> Detached | None:
    """``tensor``'s entry when it is (a copy of) one :func:`detach` wrote, else None (a
    sparse tensor, which has no name of its own, never is)."""
    if not detached or not isinstance(tensor, onnx.TensorProto):
        return None
    d = detached.get(tensor.name)
    if d is None or not is_external(tensor):
        return None
    if tuple((e.key, e.value) for e in tensor.external_data) != d.entries:
        return None
    return d


def reattach(model: onnx.ModelProto, detached: dict[str, Detached]) -> int:
    """Put the ``raw_data`` back into every detached initializer of ``model``'s main graph
    (``model`` may be a copy), from the scratch map: the tensors are again as the file has
    them, byte for byte. The number put back."""
    if not detached:
        return 0
    n = 0
    for t in model.graph.initializer:
        d = detached_values(t, detached)
        if d is None:
            continue
        del t.external_data[:]
        if d.had_location:
            t.data_location = onnx.TensorProto.DEFAULT
        else:
            t.ClearField("data_location")
        t.raw_data = d.values.tobytes()  # little-endian: spill_raw wrote only on such machines
        n += 1
    if n:
        # the map's pages just read stay in the process's memory until released; they are
        # read again from the page cache when the weights are next used
        release_pages(next(iter(detached.values())).values)
    return n


def graph_growth(model: onnx.ModelProto, detached: dict[str, Detached]) -> int:
    """How many bytes ``model``'s main graph gains when :func:`reattach` runs (exactly)."""
    grown = 0
    for t in model.graph.initializer:
        d = detached_values(t, detached)
        if d is not None:
            now = t.ByteSize()
            raw = d.values.nbytes
            # without external_data and data_location (2 bytes if it was set), with raw_data
            stored = now - sum(_field(e.ByteSize()) for e in t.external_data) - 2
            stored += (2 if d.had_location else 0) + _field(raw)
            grown += _field(stored) - _field(now)
    return grown


def _field(n: int) -> int:
    """Encoded size of a length-delimited field of ``n`` bytes (field number < 16)."""
    return 1 + _varint_len(n) + n


def _varint_len(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size
