"""A model serialized a node and an initializer at a time.

``ModelProto.SerializeToString`` encodes the whole model in one call with the interpreter
lock held: 17-27 ms on PP-OCRv4 rec each time an export is built (dozens per plan search),
the fidelity check opens a session on a model or the converted model is spilled to disk,
which the window waited for (docs/benchmarks.md, "exportgil (session 15)").
:func:`serialized` gives SerializeToString's very bytes from the parts' encodings (the
export's file). :func:`write` streams a file for a reader: protobuf readers accept a
message's fields in any order and merge an embedded message met twice
(https://protobuf.dev/programming-guides/encoding/#order,
https://protobuf.dev/programming-guides/encoding/#last-one-wins), so each node is written as
a graph field of its own, with no copy of the whole model in memory: ONNX Runtime and onnx
parse the same model, from bytes that differ from SerializeToString's (a few per node).
"""

from __future__ import annotations

from typing import BinaryIO

import onnx
from google.protobuf import unknown_fields

from bitlens.core.model.proto_copy import copy_but, copy_field
from bitlens.core.model.wire import write_varint

_GRAPH = 7  # ModelProto.graph (onnx/onnx.proto)
_NODE, _INITIALIZER = 1, 5  # GraphProto.node, GraphProto.initializer


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return write_varint(number << 3 | 2) + write_varint(len(data)) + data


def write(model: onnx.ModelProto, out: BinaryIO) -> None:
    """Write a serialization of ``model`` to ``out``, one node or initializer per C call:
    the model's other fields, then each node, each initializer and the graph's other fields
    as a graph field of their own, which a reader merges into one graph in that order."""
    g = model.graph
    if (
        not model.HasField("graph")
        or len(unknown_fields.UnknownFieldSet(model))
        or len(unknown_fields.UnknownFieldSet(g))
    ):
        out.write(model.SerializeToString())  # unknown fields: kept as the one call keeps them
        return
    out.write(copy_but(model, onnx.ModelProto(), ("graph",)).SerializeToString())
    for n in g.node:
        out.write(_field(_GRAPH, _field(_NODE, n.SerializeToString())))
    for t in g.initializer:
        out.write(_field(_GRAPH, _field(_INITIALIZER, t.SerializeToString())))
    out.write(
        _field(_GRAPH, copy_but(g, onnx.GraphProto(), ("node", "initializer")).SerializeToString())
    )


def serialized(model: onnx.ModelProto) -> bytes:
    """``model.SerializeToString()``, byte for byte, encoded a node and an initializer per C
    call: the export's file (and the bytes the checker and the size read), built dozens of
    times per plan search, 25-27 ms each in one call on PP-OCRv4 rec. upb writes a message's
    known fields in field-number order, so the bytes are the graph's nodes (field 1), its
    name (2), initializers (5) and other fields (10-16), between the model's fields below 7
    (the graph's number) and above it; a model or graph with fields this onnx does not know
    is encoded in one call (unknown fields go last). Compared with SerializeToString on the
    exports the tests build and on the cached real models."""
    g = model.graph
    if (
        not model.HasField("graph")
        or len(unknown_fields.UnknownFieldSet(model))
        or len(unknown_fields.UnknownFieldSet(g))
    ):
        return model.SerializeToString()
    low, high = onnx.ModelProto(), onnx.ModelProto()
    for fd, value in model.ListFields():
        if fd.name != "graph":
            copy_field(fd, value, low if fd.number < _GRAPH else high)
    name = onnx.GraphProto(name=g.name) if g.HasField("name") else onnx.GraphProto()
    rest = copy_but(g, onnx.GraphProto(), ("node", "name", "initializer"))
    parts = [_field(_NODE, n.SerializeToString()) for n in g.node]
    parts.append(name.SerializeToString())
    parts += [_field(_INITIALIZER, t.SerializeToString()) for t in g.initializer]
    parts.append(rest.SerializeToString())
    size = sum(map(len, parts))
    head = low.SerializeToString() + write_varint(_GRAPH << 3 | 2) + write_varint(size)
    return b"".join([head, *parts, high.SerializeToString()])  # one copy of the parts
