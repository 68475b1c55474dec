"""One validation pass over a parsed model, before anything decodes it.

Protocol buffers accept any bytes that fit the schema: a tensor whose data
is shorter than its shape, a sparse tensor of [100000, 100000] in a
128-byte file, a name that is not UTF-8, an element type that does not
exist. Each would surface later as a numpy ``cannot reshape``, a
MemoryError or a view that cannot draw. This module checks every tensor
(initializers, sparse initializers, Constant nodes and every other tensor
attribute, in subgraphs at any depth and in functions) and every string
once at load, and raises :class:`ModelLoadError` naming the tensor or field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from functools import cache, partial

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor

from bitlens.core.errors import ModelLoadError
from bitlens.core.limits import check_budget, memory_budget
from bitlens.core.model.proto_size import is_repeated
from bitlens.core.model.tensors import CONSTANT_VALUE_ATTRS

T = onnx.TensorProto
_KNOWN_TYPES = frozenset(T.DataType.values()) - {T.UNDEFINED}
_BITS = {
    **{getattr(T, n): 4 for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(T, n)},
    **{getattr(T, n): 2 for n in ("INT2", "UINT2") if hasattr(T, n)},
    **{getattr(T, n): 6 for n in ("FLOAT6E2M3", "FLOAT6E3M2") if hasattr(T, n)},
}
_COMPLEX = frozenset({T.COMPLEX64, T.COMPLEX128})
# Strings that name things the graph refers to: they must be valid UTF-8 (ONNX
# requires it) because changing them would change what refers to what.
_IDENTIFIER_FIELDS = frozenset({"name", "input", "output", "op_type", "key", "value", "domain"})


# -- walking --------------------------------------------------------------------------------------
def walk_tensors(
    model: onnx.ModelProto,
) -> Iterator[tuple[str, onnx.TensorProto | onnx.SparseTensorProto]]:
    """(description, tensor) for every tensor and sparse tensor in the model."""
    for describe, tensor in _walk_tensors(model):
        yield describe(), tensor


# A tensor's description, written only when a check fails: formatting one per tensor cost
# about a third of the load's tensor checks (1260 tensors on PP-OCRv4 rec).
Describe = Callable[[], str]


def _walk_tensors(
    model: onnx.ModelProto,
) -> Iterator[tuple[Describe, onnx.TensorProto | onnx.SparseTensorProto]]:
    """:func:`walk_tensors` with each description as a function that writes it."""
    yield from _graph_tensors(model.graph, "")
    for fn in model.functions:
        for node in fn.node:
            yield from _node_tensors(node, f"function {fn.name!r}/")


def _graph_tensors(
    graph: onnx.GraphProto, where: str
) -> Iterator[tuple[Describe, onnx.TensorProto | onnx.SparseTensorProto]]:
    for t in graph.initializer:
        yield partial(_initializer_text, "initializer", where, t), t
    for s in graph.sparse_initializer:
        yield partial(_initializer_text, "sparse initializer", where, s.values), s
    for node in graph.node:
        yield from _node_tensors(node, where)


def _initializer_text(kind: str, where: str, t: onnx.TensorProto) -> str:
    return f"{kind} {where}{t.name!r}"


def _attribute_text(node: onnx.NodeProto, where: str, attr: str, i: int | None = None) -> str:
    label = f"{node.op_type} node {where}{(node.name or (node.output[0] if node.output else ''))!r}"
    return f"{label} attribute {attr!r}" if i is None else f"{label} attribute {attr}[{i}]"


def _node_tensors(
    node: onnx.NodeProto, where: str
) -> Iterator[tuple[Describe, onnx.TensorProto | onnx.SparseTensorProto]]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield partial(_attribute_text, node, where, attr.name), attr.t
        for i, t in enumerate(attr.tensors):
            yield partial(_attribute_text, node, where, attr.name, i), t
        if attr.HasField("sparse_tensor"):
            yield partial(_attribute_text, node, where, attr.name), attr.sparse_tensor
        for i, s in enumerate(attr.sparse_tensors):
            yield partial(_attribute_text, node, where, attr.name, i), s
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g, f"{where}{node.name or node.op_type}/{attr.name}/")
        for i, g in enumerate(attr.graphs):
            yield from _graph_tensors(g, f"{where}{node.name or node.op_type}/{attr.name}[{i}]/")


# -- sizes ------------------------------------------------------------------------------------------
def element_count(dims: object) -> int:
    return math.prod(int(d) for d in dims)  # type: ignore[attr-defined]


def expected_raw_bytes(data_type: int, count: int) -> int | None:
    """Bytes ``raw_data`` must hold for ``count`` elements (None: strings have no raw form)."""
    if data_type == T.STRING:
        return None
    bits = _BITS.get(data_type)
    if bits is not None:
        return (count * bits + 7) // 8
    return count * itemsize(data_type)


@cache  # one numpy lookup per element type, not per tensor
def itemsize(data_type: int) -> int:
    return int(onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize)


def _expected_entries(data_type: int, count: int) -> int:
    bits = _BITS.get(data_type)
    if bits in (4, 2):
        return -(-count // (8 // bits))  # packed into one int32 entry per byte
    if data_type in _COMPLEX:
        return 2 * count
    return count


def decoded_bytes(data_type: int, count: int) -> int:
    """Bytes numpy needs for the decoded tensor (one byte per packed element)."""
    if data_type == T.STRING:
        return count * 8  # object pointers; the strings are already in memory
    return count * itemsize(data_type)


# -- checks ---------------------------------------------------------------------------------------
def check_model(
    model: onnx.ModelProto, label: str, raw_lengths: Sequence[int | None] | None = None
) -> None:
    """Every string readable, every tensor's data consistent with its type and shape.
    ``raw_lengths``: the main-graph initializers' raw data lengths as the file holds them
    (bitlens.core.model.wire), so that their bytes need not be copied to be measured."""
    check_strings(model, label)
    check_io_types(model, label)
    check_constant_nodes(model, label)
    known = list(raw_lengths or ())
    if len(known) != len(model.graph.initializer):
        known = []
    total = 0
    budget = memory_budget()
    for k, (describe, tensor) in enumerate(_walk_tensors(model)):
        what = partial(_labelled, label, describe)
        if isinstance(tensor, onnx.SparseTensorProto):
            total += check_sparse(tensor, what())
        else:  # walk_tensors yields the main graph's initializers first, in order
            raw = known[k] if k < len(known) else None
            total += _check_tensor(tensor, what, raw, budget)
    check_budget(total, f"{label}: the model's tensors", ModelLoadError)


def _labelled(label: str, describe: Describe) -> str:
    return f"{label}: {describe()}"


def check_tensor(t: onnx.TensorProto, what: str, raw_length: int | None = None) -> int:
    """Raise unless ``t``'s data fit its type and shape; return its decoded size in bytes.
    ``raw_length``: the length of its raw data when known without copying them."""
    return _check_tensor(t, lambda: what, raw_length, memory_budget())


def _check_tensor(
    t: onnx.TensorProto, describe: Describe, raw_length: int | None, budget: int
) -> int:
    """:func:`check_tensor` with the description written only for a message, and the
    memory budget read once per model."""
    data_type = t.data_type
    if data_type in _KNOWN_TYPES and not t.HasField("segment"):
        dims = t.dims
        if not dims or min(dims) >= 0:
            count = element_count(dims)
            size = decoded_bytes(data_type, count)
            if size <= budget:
                if t.data_location == T.EXTERNAL:
                    return size
                if t.HasField("raw_data"):
                    want = expected_raw_bytes(data_type, count)
                    have = len(t.raw_data) if raw_length is None else raw_length
                    if want is not None and have == want:
                        return size
                else:
                    field = onnx.helper.tensor_dtype_to_field(data_type)
                    if len(getattr(t, field)) == _expected_entries(data_type, count):
                        return size
    return _check_tensor_slowly(t, describe(), raw_length)


def _check_tensor_slowly(t: onnx.TensorProto, what: str, raw_length: int | None) -> int:
    """The checks in their order, each with its message (a tensor the fast pass doubts)."""
    if t.data_type not in _KNOWN_TYPES:
        kind = (
            "no element type"
            if t.data_type == T.UNDEFINED
            else f"unknown element type {t.data_type}"
        )
        raise ModelLoadError(f"{what} has {kind}")
    if any(d < 0 for d in t.dims):
        raise ModelLoadError(f"{what} has a negative dimension in shape {list(t.dims)}")
    if t.HasField("segment"):
        raise ModelLoadError(f"{what} is a segment of a larger tensor, which is not supported")
    count = element_count(t.dims)
    size = decoded_bytes(t.data_type, count)
    check_budget(size, f"{what} of shape {list(t.dims)}", ModelLoadError)
    if t.data_location == T.EXTERNAL:
        return size  # checked against its file before it is read (external.py)
    if t.HasField("raw_data"):
        want = expected_raw_bytes(t.data_type, count)
        if want is None:
            raise ModelLoadError(
                f"{what} is a string tensor with raw data, which ONNX does not allow"
            )
        have = len(t.raw_data) if raw_length is None else raw_length
        if have != want:
            raise ModelLoadError(
                f"{what} holds {have} bytes of data, but its type "
                f"{_type_name(t.data_type)} and shape {list(t.dims)} need {want}"
            )
        return size
    field = onnx.helper.tensor_dtype_to_field(t.data_type)
    have = len(getattr(t, field))
    want_n = _expected_entries(t.data_type, count)
    if have != want_n:
        if have == 0:
            msg = f"{what} has no data for shape {list(t.dims)}"
        else:
            msg = (
                f"{what} holds {have} values in {field}, but its type {_type_name(t.data_type)} "
                f"and shape {list(t.dims)} need {want_n}"
            )
        raise ModelLoadError(msg)
    return size


def check_sparse(s: onnx.SparseTensorProto, what: str) -> int:
    """Values, indices and dense shape consistent, indices in range, dense size within budget."""
    dims = [int(d) for d in s.dims]
    if any(d < 0 for d in dims):
        raise ModelLoadError(f"{what} has a negative dimension in shape {dims}")
    check_tensor(s.values, f"{what} values")
    dense = decoded_bytes(s.values.data_type, element_count(dims))
    check_budget(dense, f"{what} of dense shape {dims}", ModelLoadError)
    check_tensor(s.indices, f"{what} indices")
    if s.values.data_location == T.EXTERNAL or s.indices.data_location == T.EXTERNAL:
        return dense
    if len(s.values.dims) != 1:
        raise ModelLoadError(f"{what}: values must be 1-D, got shape {list(s.values.dims)}")
    nnz = int(s.values.dims[0])
    idims = [int(d) for d in s.indices.dims]
    if s.indices.data_type != T.INT64:
        raise ModelLoadError(
            f"{what}: indices must be int64, not {_type_name(s.indices.data_type)}"
        )
    if idims not in ([nnz], [nnz, len(dims)]):
        raise ModelLoadError(
            f"{what}: indices of shape {idims} do not fit {nnz} values in a {len(dims)}-D tensor"
        )
    if nnz > element_count(dims):
        raise ModelLoadError(f"{what}: {nnz} values for a dense shape {dims} of fewer elements")
    idx = onnx.numpy_helper.to_array(s.indices)
    if idx.size:
        if idx.ndim == 1:
            bad = (idx < 0) | (idx >= element_count(dims))
        else:
            bad = ((idx < 0) | (idx >= np.asarray(dims, dtype=np.int64))).any(axis=1)
        if bad.any():
            first = idx[int(np.argmax(bad))]
            raise ModelLoadError(f"{what}: index {first.tolist()} is outside the shape {dims}")
    return dense


def check_constant_nodes(model: onnx.ModelProto, label: str) -> None:
    """Every ONNX Constant node carries exactly one value (``value``, ``value_floats``...)."""
    stack = [model.graph]
    while stack:
        graph = stack.pop()
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)
            if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
                continue
            values = [a.name for a in node.attribute if a.name in CONSTANT_VALUE_ATTRS]
            if len(values) != 1:
                name = node.name or (node.output[0] if node.output else "")
                what = "no value" if not values else f"{len(values)} values ({', '.join(values)})"
                raise ModelLoadError(f"{label}: Constant node {name!r} has {what}")


def check_io_types(model: onnx.ModelProto, label: str) -> None:
    """The main graph's inputs and outputs must have element types that exist."""
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for vi in values:
            tp = vi.type
            if tp.WhichOneof("value") == "tensor_type":
                et = tp.tensor_type.elem_type
                if et not in _KNOWN_TYPES:
                    raise ModelLoadError(
                        f"{label}: model {kind} {vi.name!r} has "
                        + ("no element type" if et == T.UNDEFINED else f"unknown element type {et}")
                    )
                for d in tp.tensor_type.shape.dim:
                    if d.HasField("dim_value") and d.dim_value < 0:
                        raise ModelLoadError(
                            f"{label}: model {kind} {vi.name!r} has a negative dimension "
                            f"{d.dim_value}"
                        )


def check_strings(msg: object, label: str, path: str = "") -> None:
    """Refuse identifiers that are not UTF-8; make other text (doc, producer) readable.

    With the upb protobuf backend a string field holding invalid UTF-8 comes
    back as ``bytes``, which then leaks into JSON and views.
    """
    _check_strings(msg, label, path)


# Where a message sits, written out only for a message: (parent, field name, index or None)
# links, or the caller's string at the root (formatting every node's and attribute's path
# up front cost most of this walk on PP-OCRv4 rec's 860 nodes).
_Where = str | tuple


def _where_text(where: _Where) -> str:
    parts: list[str] = []
    while isinstance(where, tuple):
        where, name, i = where
        parts.append(f"{name}." if i is None else f"{name}[{i}].")
    return where + "".join(reversed(parts))


@cache  # per field descriptor: (is a string, is a message, is repeated)
def _field_kind(field: FieldDescriptor) -> tuple[bool, bool, bool]:
    return (
        field.type == FieldDescriptor.TYPE_STRING,
        field.type == FieldDescriptor.TYPE_MESSAGE,
        is_repeated(field),
    )


def _check_strings(msg: object, label: str, where: _Where) -> None:
    if isinstance(msg, onnx.TensorProto):
        # Only its names: listing a tensor's fields would copy its raw data.
        for name in ("name", "doc_string"):
            if isinstance(getattr(msg, name), bytes):
                raise ModelLoadError(
                    f"{label}: {_where_text(where) + name} of a tensor is not valid UTF-8"
                )
        for i, entry in enumerate(msg.external_data):
            _check_strings(entry, label, (where, "external_data", i))
        return
    for field, value in msg.ListFields():  # type: ignore[attr-defined]
        text, message, repeated = _field_kind(field)
        if text:
            values = value if repeated else [value]
            bad = [v for v in values if isinstance(v, bytes)]
            if not bad:
                continue
            name = field.name
            if name in _IDENTIFIER_FIELDS or repeated:
                raise ModelLoadError(
                    f"{label}: {_where_text(where) + name} {bad[0][:40]!r} is not valid UTF-8 "
                    "(corrupt model?)"
                )
            setattr(msg, name, bad[0].decode("utf-8", "backslashreplace"))
        elif message:
            if repeated:
                for i, sub in enumerate(value):
                    _check_strings(sub, label, (where, field.name, i))
            else:
                _check_strings(value, label, (where, field.name, None))


def _type_name(data_type: int) -> str:
    try:
        return T.DataType.Name(data_type).lower()
    except ValueError:
        return f"type {data_type}"


__all__ = ["check_model", "check_sparse", "check_tensor", "expected_raw_bytes", "walk_tensors"]
