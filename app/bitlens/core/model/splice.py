"""A model's serialized bytes with the scratch map's weights put back, without a protobuf copy.

Converting a model's opset needs its whole serialized form (the converter and ONNX Runtime
read bytes). Copying the parsed proto and putting the weights back into the copy
(rawspill.reattach) holds them twice before serializing: the copy and its bytes, 108 MB on
ddddocr's ``common.onnx`` next to the converter's own two. Here the model is serialized
without them (their external-data references instead), and each referring initializer is
rewritten on the wire: its ``external_data`` and ``data_location`` fields dropped, its
``raw_data`` written from the map, the enclosing lengths encoded again. The result parses
to the same model as the copy would (tested against it).
https://protobuf.dev/programming-guides/encoding/ (wire format); field numbers from
onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto): ``ModelProto.graph``
7, ``GraphProto.initializer`` 5, ``TensorProto.raw_data`` 9, ``external_data`` 13,
``data_location`` 14.
"""

from __future__ import annotations

from collections.abc import Iterator

import onnx

from bitlens.core.model.external import release_pages
from bitlens.core.model.rawspill import Detached, detached_values
from bitlens.core.model.wire import read_varint, write_varint

_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_RAW_DATA, _EXTERNAL_DATA, _DATA_LOCATION = 9, 13, 14
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def serialized(model: onnx.ModelProto, detached: dict[str, Detached]) -> bytes:
    """``model``'s bytes as if :func:`~bitlens.core.model.rawspill.reattach` had run on a
    copy of it first; the other tensors it leaves outside stay references."""
    spliced = [detached_values(t, detached) for t in model.graph.initializer]
    if not any(spliced):
        return model.SerializeToString()
    data = model.SerializeToString()  # small: the weights are references
    buf = memoryview(data)
    out: list[bytes | memoryview] = []
    for number, kind, tag, start, end in _fields(buf, 0, len(buf)):
        if number != _MODEL_GRAPH or kind != _LEN:
            out.append(buf[tag:end])
            continue
        graph: list[bytes | memoryview] = []
        k = 0
        for inner, ikind, itag, istart, iend in _fields(buf, start, end):
            if inner == _GRAPH_INITIALIZER and ikind == _LEN:
                d = spliced[k]
                k += 1
                if d is not None:
                    tensor = _tensor(buf, istart, iend, d)
                    graph.append(_key(_GRAPH_INITIALIZER) + write_varint(_size(tensor)))
                    graph.extend(tensor)
                    continue
            graph.append(buf[itag:iend])
        out.append(_key(_MODEL_GRAPH) + write_varint(_size(graph)))
        out.extend(graph)
    whole = b"".join(out)
    release_pages(next(iter(detached.values())).values)  # the map's pages just read
    return whole


def _tensor(buf: memoryview, start: int, end: int, d: Detached) -> list[bytes | memoryview]:
    """One referring TensorProto's fields, in order, with ``raw_data`` in place of the
    reference (and ``data_location`` as the file had it)."""
    parts: list[bytes | memoryview] = []
    raw = d.values.reshape(-1).view("B").data  # little-endian, as spill_raw wrote it
    placed = False
    for number, _kind, tag, _start, fend in _fields(buf, start, end):
        if number in (_EXTERNAL_DATA, _DATA_LOCATION):
            continue
        if number > _RAW_DATA and not placed:
            parts += [_key(_RAW_DATA) + write_varint(raw.nbytes), raw]
            placed = True
        parts.append(buf[tag:fend])
    if not placed:
        parts += [_key(_RAW_DATA) + write_varint(raw.nbytes), raw]
    if d.had_location:
        parts.append(bytes([(_DATA_LOCATION << 3) | _VARINT, onnx.TensorProto.DEFAULT]))
    return parts


def _fields(buf: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, tag start, value start, field end) of each field."""
    while pos < end:
        tag = pos
        key, pos = read_varint(buf, pos, len(buf))
        number, kind = key >> 3, key & 7
        start = pos
        if kind == _VARINT:
            _, pos = read_varint(buf, pos, len(buf))
        elif kind == _I64:
            pos += 8
        elif kind == _I32:
            pos += 4
        elif kind == _LEN:
            size, start = read_varint(buf, pos, len(buf))
            pos = start + size
        else:  # groups are not used by onnx.proto, and protobuf wrote these bytes
            raise ValueError(f"unexpected wire type {kind}")
        yield number, kind, tag, start, pos


def _key(number: int) -> bytes:
    return write_varint((number << 3) | _LEN)


def _size(parts: list[bytes | memoryview]) -> int:
    return sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts)
