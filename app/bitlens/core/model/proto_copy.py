"""Protobuf fields copied from one message into another, a slice of a repeated field at a time.

upb copies each message it appends with the interpreter lock held: one ``extend`` of
rapidocr PP-OCRv4 recognizer's 860 nodes held it 12-15 ms in the window's open job, and a
whole graph's nodes 25 ms per export build, dozens of builds per plan search; between two
calls the window's thread can take the lock (docs/benchmarks.md, "opengil (session 15)" and
"exportgil (session 15)"). The engine's simulation graphs and the exporter's graphs copy
through here.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message

from bitlens.core.model.proto_size import is_repeated

COPY_SLICE = 64  # elements of a repeated field copied per protobuf call (256 left 5.5 ms calls)


def extend_in_slices(to, values: Sequence, per_call: int = COPY_SLICE) -> None:
    """``to.extend(values)``, ``per_call`` elements per protobuf call."""
    for i in range(0, len(values), per_call):
        to.extend(values[i : i + per_call])


def copy_field(fd, value, out: Message) -> None:
    """Field ``fd`` of another message, holding ``value``, copied into ``out``."""
    if is_repeated(fd):
        extend_in_slices(getattr(out, fd.name), value)
    elif fd.message_type is not None:
        getattr(out, fd.name).CopyFrom(value)
    else:
        setattr(out, fd.name, value)


def copy_but(src: Message, out: Message, left_out: tuple[str, ...]) -> Message:
    """``out`` with every field of ``src`` but those named ``left_out`` copied in."""
    for fd, value in src.ListFields():
        if fd.name not in left_out:
            copy_field(fd, value, out)
    return out
