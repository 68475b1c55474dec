"""Where each main-graph initializer's ``raw_data`` lies in the file's bytes, and its length.

The loader checks that every tensor's data fit its type and shape
(:func:`bitlens.core.model.validate.check_tensor`). Asked for ``len(t.raw_data)``,
protobuf's Python API first copies the bytes into a new ``bytes`` object: 20 ms for the
54 MB of ddddocr's ``common.onnx``, one more pass over every weight at load. The lengths
are in the file anyway: each ``raw_data`` is a length-delimited field of its
``TensorProto``, so a walk over the protobuf wire format (field tags and lengths, skipping
every other field) reads them without touching the data. The same walk gives where each
``raw_data`` lies, so the loader writes large weights out from the file's bytes
(:mod:`bitlens.core.model.rawspill`).
https://protobuf.dev/programming-guides/encoding/ (wire format);
field numbers from onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto):
``ModelProto.graph`` 7, ``GraphProto.initializer`` 5, ``TensorProto.raw_data`` 9.
"""

from __future__ import annotations

_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA = 9
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
FIELDS_MIN = 4096  # fields read at least before the walk gives up (see below)


class _Malformed(Exception):
    pass


def write_varint(n: int) -> bytes:
    """``n`` (>= 0) as a base-128 varint."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint_size(n: int) -> int:
    """Bytes of ``n`` (>= 0) as a varint."""
    return max(1, (n.bit_length() + 6) // 7)


def read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    """The base-128 varint at ``buf[pos]`` and the position after it (not past ``end``)."""
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview, pos: int, end: int, budget: list[int]):
    """(field number, start, end) of each length-delimited field in ``buf[pos:end]``; other
    fields are skipped. Raises _Malformed on anything protobuf would not parse alike, and
    once ``budget[0]`` fields were read in all (the walk would cost more than the copy)."""
    while pos < end:
        budget[0] -= 1
        if budget[0] < 0:
            raise _Malformed
        key, pos = read_varint(buf, pos, end)
        number, kind = key >> 3, key & 7
        if kind == _VARINT:
            _, pos = read_varint(buf, pos, end)
        elif kind == _I64:
            pos += 8
        elif kind == _I32:
            pos += 4
        elif kind == _LEN:
            size, pos = read_varint(buf, pos, end)
            if pos + size > end:
                raise _Malformed
            yield number, pos, pos + size
            pos += size
        else:  # groups (3, 4) are not used by onnx.proto
            raise _Malformed
    if pos != end:
        raise _Malformed


def initializer_raw_lengths(data) -> list[int | None] | None:
    """Per main-graph initializer, in the order protobuf parses them, the length of its
    ``raw_data`` (None where it has none); None when the bytes are not read alike (the
    caller then asks the parsed proto). A message field met twice is merged by protobuf:
    the graph's initializers from every occurrence of ``graph``, the last ``raw_data``."""
    spans = initializer_raw_spans(data)
    return None if spans is None else [None if s is None else s[1] - s[0] for s in spans]


def initializer_raw_spans(data) -> list[tuple[int, int] | None] | None:
    """:func:`initializer_raw_lengths` as the ``(start, end)`` of each ``raw_data`` in
    ``data``: the bytes protobuf parses that field from (bitlens.core.model.rawspill
    writes them out without decoding the tensor)."""
    buf = memoryview(data).cast("B")
    # A field costs about a microsecond here, copying 4 KiB about as much: a graph of many
    # nodes and small weights (or data written as one field per value) is left to protobuf.
    budget = [max(FIELDS_MIN, len(buf) // 4096)]
    try:
        spans: list[tuple[int, int] | None] = []
        for number, start, end in _fields(buf, 0, len(buf), budget):
            if number != _MODEL_GRAPH:
                continue
            for inner, t_start, t_end in _fields(buf, start, end, budget):
                if inner != _GRAPH_INITIALIZER:
                    continue
                raw = None
                for field, r_start, r_end in _fields(buf, t_start, t_end, budget):
                    if field == _TENSOR_RAW_DATA:
                        raw = (r_start, r_end)
                spans.append(raw)
        return spans
    except _Malformed:
        return None
    finally:
        buf.release()
