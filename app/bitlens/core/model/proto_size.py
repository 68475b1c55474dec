"""A model's protobuf size, measured a node and a tensor at a time.

``ModelProto.ByteSize()`` is one C call that sizes the whole message (upb sizes by encoding)
with the interpreter lock held: 20-28 ms of CPU on rapidocr's PP-OCRv4 recognizer in the
window's open job, weights detached, time in which the window's thread cannot run Python
(docs/benchmarks.md "opengil (session 15)"). A message's encoding is its fields' encodings one
after another (https://protobuf.dev/programming-guides/encoding/), so its size is the sum of
its fields' sizes: a repeated message field costs, per element, its tag, the element's length
as a varint and the element; a scalar field is sized in a message holding it alone. Each
element is then one short C call, and Python's lock can change hands between them. Nodes
with subgraphs (If, Loop, Scan bodies) and the graphs in them are sized the same way, field
by field; a message with fields this protobuf does not know (unknown fields, kept from a
newer schema) is sized whole, as before.
"""

from __future__ import annotations

import onnx
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from bitlens.core.model.wire import varint_size

try:  # protobuf 4.24+
    from google.protobuf.unknown_fields import UnknownFieldSet
except ImportError:  # older: unknown fields cannot be told, every message is sized whole
    UnknownFieldSet = None

_GRAPH_ATTRIBUTES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
_WHOLE_MESSAGES = (onnx.ModelProto, onnx.GraphProto, onnx.FunctionProto)


def byte_size(msg: Message) -> int:
    """``msg.ByteSize()``, summed field by field and element by element."""
    if UnknownFieldSet is None or not _split(msg) or len(UnknownFieldSet(msg)):
        return msg.ByteSize()
    total = 0
    for fd, value in msg.ListFields():
        if fd.type != FieldDescriptor.TYPE_MESSAGE:
            alone = type(msg)()
            if is_repeated(fd):
                getattr(alone, fd.name).extend(value)
            else:
                setattr(alone, fd.name, value)
            total += alone.ByteSize()
            continue
        tag = varint_size(fd.number << 3 | 2)  # wire type 2: length-delimited
        items = value if is_repeated(fd) else (value,)
        for item in items:
            n = byte_size(item)
            total += tag + varint_size(n) + n
    return total


def is_repeated(field: FieldDescriptor) -> bool:
    rep = getattr(field, "is_repeated", None)  # protobuf 6+; older ones only have label
    if rep is None:
        return field.label == FieldDescriptor.LABEL_REPEATED
    return bool(rep() if callable(rep) else rep)


def _split(msg: Message) -> bool:
    """Whether ``msg`` is sized field by field: a model, a graph, a function, or a node or
    attribute that holds a graph (anything else is small, or a tensor sized in one call)."""
    if isinstance(msg, _WHOLE_MESSAGES):
        return True
    if isinstance(msg, onnx.NodeProto):
        return any(a.type in _GRAPH_ATTRIBUTES for a in msg.attribute)
    return isinstance(msg, onnx.AttributeProto) and msg.type in _GRAPH_ATTRIBUTES
