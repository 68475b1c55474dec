"""Values an integer input must take for the model to run, read from the graph.

Random data cannot guess a sample rate: silero-vad (https://github.com/snakers4/silero-vad)
takes ``sr: int64 []`` and branches on ``Equal(sr, 16000)``, and a random integer is
neither 16000 nor 8000, so neither branch's shapes fit. A scalar integer input that the
top-level graph compares for equality with a constant is given that constant.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper


def compared_constants(model: onnx.ModelProto) -> dict[str, int]:
    """Graph input name -> the constant it is compared with (``Equal``), for scalar
    integer inputs; the first comparison wins."""
    g = model.graph
    ints = {
        i.name
        for i in g.input
        if i.type.tensor_type.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
        and len(i.type.tensor_type.shape.dim) == 0
        and i.type.tensor_type.HasField("shape")
    }
    # Only one-value tensors can be compared with a scalar: converting every initializer
    # would copy all the weights (or read external data the loader left in its files).
    consts = {
        t.name: numpy_helper.to_array(t)
        for t in g.initializer
        if _one_value(t) and t.data_location != onnx.TensorProto.EXTERNAL
    }
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and _one_value(a.t):
                    consts[node.output[0]] = numpy_helper.to_array(a.t)
    out: dict[str, int] = {}
    for node in g.node:
        if node.op_type != "Equal" or len(node.input) != 2:
            continue
        for mine, other in (node.input, reversed(node.input)):
            value = consts.get(other)
            if mine in ints and mine not in out and value is not None and value.size == 1:
                out[mine] = int(value.reshape(()))
    return out


def _one_value(t: onnx.TensorProto) -> bool:
    return all(d == 1 for d in t.dims)
