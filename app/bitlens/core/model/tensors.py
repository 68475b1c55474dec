"""ONNX tensors and value types as numpy arrays and neutral descriptions.

Only metadata is read when describing a tensor (shape, dtype), so building
the inventory of a large model never materializes its weights; values are
decoded on demand by :func:`to_numpy`.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.model.types import Dim, TensorInfo

# Element types a weight format can replace: the float types numpy (with
# ml_dtypes) can hold and every quantizer accepts.
FLOAT_ELEM_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.BFLOAT16,
    }
)
FLOAT_DTYPE_NAMES = frozenset({"float32", "float16", "float64", "bfloat16"})

# Constant-node attributes that carry a value, with the element type and shape
# they imply when the attribute is not a full tensor.
_SCALAR_ATTRS = {
    "value_float": onnx.TensorProto.FLOAT,
    "value_int": onnx.TensorProto.INT64,
    "value_string": onnx.TensorProto.STRING,
}
_LIST_ATTRS = {
    "value_floats": onnx.TensorProto.FLOAT,
    "value_ints": onnx.TensorProto.INT64,
    "value_strings": onnx.TensorProto.STRING,
}
CONSTANT_VALUE_ATTRS = frozenset({"value", "sparse_value", *_SCALAR_ATTRS, *_LIST_ATTRS})


@cache  # asked once per typed value (750 on PP-OCRv4 rec's load): numpy's lookup once per type
def dtype_name(elem_type: int) -> str:
    """The numpy dtype name of an ONNX element type ("float32", "bfloat16", ...)."""
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type).name)
    except (KeyError, ValueError, TypeError):
        pass
    if not elem_type:
        return "undefined"
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:  # a type number no ONNX version defines
        return f"unknown({elem_type})"


def constant_attr(node: onnx.NodeProto) -> onnx.AttributeProto | None:
    """The value-carrying attribute of a Constant node, or None if it has none."""
    for attr in node.attribute:
        if attr.name in CONSTANT_VALUE_ATTRS:
            return attr
    return None


def constant_meta(node: onnx.NodeProto) -> tuple[tuple[int, ...], int] | None:
    """(shape, element type) of a Constant node's value without decoding it."""
    attr = constant_attr(node)
    if attr is None:
        return None
    if attr.name == "value":
        return tuple(int(d) for d in attr.t.dims), attr.t.data_type
    if attr.name == "sparse_value":
        return tuple(int(d) for d in attr.sparse_tensor.dims), attr.sparse_tensor.values.data_type
    if attr.name in _SCALAR_ATTRS:
        return (), _SCALAR_ATTRS[attr.name]
    values = {"value_floats": attr.floats, "value_ints": attr.ints, "value_strings": attr.strings}
    return (len(values[attr.name]),), _LIST_ATTRS[attr.name]


def constant_value(node: onnx.NodeProto) -> np.ndarray:
    """The value of a Constant node as a numpy array."""
    attr = constant_attr(node)
    if attr is None:
        raise ValueError(f"Constant node {node.name!r} has no value attribute")
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    if attr.name == "sparse_value":
        return sparse_to_numpy(attr.sparse_tensor)
    value = onnx.helper.get_attribute_value(attr)
    if attr.name in ("value_float", "value_floats"):
        return np.asarray(value, dtype=np.float32)
    if attr.name in ("value_int", "value_ints"):
        return np.asarray(value, dtype=np.int64)
    return np.asarray(value, dtype=object)


def sparse_to_numpy(sparse: onnx.SparseTensorProto) -> np.ndarray:
    """Densify a SparseTensorProto (linear or coordinate indices)."""
    values = numpy_helper.to_array(sparse.values)
    shape = tuple(int(d) for d in sparse.dims)
    dense = np.zeros(shape, dtype=values.dtype)
    indices = numpy_helper.to_array(sparse.indices).astype(np.int64)
    if indices.ndim == 1:
        dense.reshape(-1)[indices] = values
    else:
        dense[tuple(indices.T)] = values
    return dense


def to_numpy(tensor: onnx.TensorProto | onnx.SparseTensorProto) -> np.ndarray:
    if isinstance(tensor, onnx.SparseTensorProto):
        return sparse_to_numpy(tensor)
    return numpy_helper.to_array(tensor)


def as_float(values: np.ndarray) -> np.ndarray:
    """Float values for quantizers: float64 stays float64, other floats become float32.

    fp16 and bf16 are widened because numpy arithmetic on them is slow or
    lossy; the widening is exact, so errors measured against the result are
    the format's own.
    """
    if values.dtype == np.float64:
        return values
    return values.astype(np.float32, copy=False)


def value_info_to_tensor(vi: onnx.ValueInfoProto) -> TensorInfo:
    """A graph value's name, shape (symbolic dims as str) and dtype."""
    tp = vi.type
    kind = tp.WhichOneof("value")
    if kind != "tensor_type":
        return TensorInfo(vi.name, None, _non_tensor_type(tp))
    tt = tp.tensor_type
    if not tt.HasField("shape"):
        return TensorInfo(vi.name, None, dtype_name(tt.elem_type))
    dims: list[Dim] = []
    for d in tt.shape.dim:
        which = d.WhichOneof("value")  # one call where two HasField asked the same
        if which == "dim_value":
            dims.append(int(d.dim_value))
        elif which == "dim_param":
            dims.append(str(d.dim_param))
        else:
            dims.append(None)
    return TensorInfo(vi.name, tuple(dims), dtype_name(tt.elem_type))


def is_tensor_value(info: TensorInfo) -> bool:
    """False for a sequence, map or optional value (a ZipMap's list of {class: score} maps):
    numbers cannot be compared element by element there."""
    return not info.dtype.startswith(("sequence(", "map(", "optional(", "sparse_tensor"))


def _non_tensor_type(tp: onnx.TypeProto) -> str:
    kind = tp.WhichOneof("value")
    if kind == "sequence_type":
        return f"sequence({_non_tensor_type(tp.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({_non_tensor_type(tp.optional_type.elem_type)})"
    if kind == "tensor_type":
        return dtype_name(tp.tensor_type.elem_type)
    if kind == "map_type":
        return f"map({dtype_name(tp.map_type.key_type)})"
    return kind or "unknown"
