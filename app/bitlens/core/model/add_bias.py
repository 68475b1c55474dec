"""The bias of a linear layer exported as MatMul + Add.

PyTorch and most exporters write ``nn.Linear`` as ``MatMul(x, W)`` followed by
``Add(·, b)`` with ``b`` a constant of one value per output column. That constant is
the layer's bias (ONNX Runtime fuses the pair into one Gemm); listing it in
``Layer.biases`` lets bias correction fold the rounding's mean output shift into it, as
for Conv and Gemm biases.
"""

from __future__ import annotations

import dataclasses
import math

import onnx

from bitlens.core.model.types import Layer, Storage, WeightInfo


def with_add_biases(layers: list[Layer], graph: onnx.GraphProto) -> list[Layer]:
    """``layers`` with each main-graph MatMul's Add constant as its bias, where the
    MatMul output feeds one Add alone and the constant is a float32 initializer of one
    value per output column.

    The constant may be read by other nodes too: ALBERT's shared layers (sudachi-b-imitator)
    run one Linear four times, four MatMul + Add pairs on one weight and one bias. Like a bias
    shared by Gemms (bitlens.core.engine.rewrite.shared_biases), each such layer reads the
    bias from its own input in the engine and gets its own int32 copy in the export: with
    the float bias kept, ONNX Runtime fused MatMul + Add into a float Gemm (the input shape
    is static) and 24 of the 27 layers lost their integer kernel."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    inits = {t.name: t for t in graph.initializer}
    out = []
    for layer in layers:
        bias = _add_bias(layer, consumers, inits, outputs)
        out.append(layer if bias is None else dataclasses.replace(layer, biases=(bias,)))
    return out


def _add_bias(layer, consumers, inits, outputs) -> WeightInfo | None:
    if layer.op_type != "MatMul" or layer.graph_path or layer.biases or len(layer.weights) != 1:
        return None
    w = layer.weights[0]
    if layer.inputs[1:2] != (w.name,) or len(w.shape) != 2 or layer.outputs[0] in outputs:
        return None
    out = layer.outputs[0]
    users = consumers.get(out, [])
    # also through float-to-float Casts (open_nsfw's head: MatMul -> Cast -> Add), identities
    # on a float32 MatMul's output that the export's int32 bias looks through too
    while w.dtype == "float32" and len(users) == 1 and _float_cast(users[0]):
        out = users[0].output[0]
        users = consumers.get(out, [])
    if out in outputs or len(users) != 1 or users[0].op_type != "Add" or len(users[0].input) != 2:
        return None
    add = users[0]
    other = add.input[1] if add.input[0] == out else add.input[0]
    t = inits.get(other)
    if t is None or t.data_type != onnx.TensorProto.FLOAT:
        return None
    dims = tuple(int(d) for d in t.dims)
    if not dims or math.prod(dims) != w.shape[1] or dims[-1] != w.shape[1]:
        return None
    return WeightInfo(other, dims, "float32", Storage.INITIALIZER, "", 0, 0)


def _float_cast(node: onnx.NodeProto) -> bool:
    to = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "to"), None)
    return node.op_type == "Cast" and to == onnx.TensorProto.FLOAT
