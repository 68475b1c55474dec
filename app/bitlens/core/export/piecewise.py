"""A model serialized a node and an initializer at a time, for readers that parse it.

``ModelProto.SerializeToString`` encodes the whole model in one call with the interpreter
lock held: 17-26 ms on PP-OCRv4 rec each time the fidelity check opens a session on a
model, the opset conversion verifies it or spills it to disk, several per export, which the
window waited for (docs/benchmarks.md, "exportgil (session 15)"). Protobuf readers accept
a message's fields in any order and merge an embedded message met twice
(https://protobuf.dev/programming-guides/encoding/#order,
https://protobuf.dev/programming-guides/encoding/#last-one-wins), so the main graph can be
written a node at a time, each as a graph field of its own: ONNX Runtime and onnx parse the
same model. The bytes differ from ``SerializeToString``'s (a few more per node), so files
the user keeps (the export itself) are not written this way; only files a session or the
export reads back.
"""

from __future__ import annotations

from typing import BinaryIO

import onnx
from google.protobuf import unknown_fields

_GRAPH = 7  # ModelProto.graph (onnx/onnx.proto)
_NODE, _INITIALIZER = 1, 5  # GraphProto.node, GraphProto.initializer


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


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


def copy_but(src, out, left_out: tuple[str, ...]):
    """``out`` with every field of ``src`` but those named ``left_out`` copied in."""
    for fd, value in src.ListFields():
        if fd.name in left_out:
            continue
        if _repeated(fd):
            getattr(out, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(out, fd.name).CopyFrom(value)
        else:
            setattr(out, fd.name, value)
    return out


def _repeated(fd) -> bool:
    rep = getattr(fd, "is_repeated", None)  # protobuf 6+; older ones only have label
    return bool(rep) if rep is not None else fd.label == fd.LABEL_REPEATED
