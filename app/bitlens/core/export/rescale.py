"""A Div or Mul by a positive constant between two quantizers, written as one DequantizeLinear.

A deployment target quantizes the output of ``x / c`` (a paddle-style
HardSwish's ``/ 6``) on the grid of its quantized input ``x`` scaled by
``1 / c``, same zero point (:func:`bitlens.core.targets.placement`). Every
dequantized input ``(q - z) * s`` divided by ``c`` then lands on the code
``q`` again, so ``DequantizeLinear -> Div -> QuantizeLinear -> DequantizeLinear``
equals ``DequantizeLinear(q, s / c, z)``: the export writes that, and ONNX
Runtime, which has no QLinear form of Div, no longer runs a float Div with a
QuantizeLinear/DequantizeLinear pair over the tensor. :func:`identity_on_codes`
checks the claim on every code in float32, as ONNX Runtime and the engine's
simulation compute it; where it fails the op is written as it is.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.formats import Format
from bitlens.core.model import tensors


def constant_of(g: onnx.GraphProto, name: str) -> np.ndarray | None:
    """The value of a main-graph initializer or Constant node, else None."""
    for t in g.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in g.node:
        if n.op_type == "Constant" and n.output and n.output[0] == name:
            try:
                return np.asarray(tensors.constant_value(n))
            except ValueError:
                return None
    return None


def identity_on_codes(
    fmt: Format, src: QuantizerRecord, op: str, constant: np.float32, scale: float, zero: float
) -> bool:
    """Whether quantizing ``DequantizeLinear(q) op constant`` with (``scale``, ``zero``) returns
    ``q`` for every code ``q`` of ``fmt`` (float32 throughout, ties to even)."""
    if src.scale is None or src.zero_point is None or zero != src.zero_point:
        return False
    codes = np.arange(fmt.qmin, fmt.qmax + 1, dtype=np.float32)
    x = (codes - np.float32(src.zero_point)) * np.float32(src.scale)
    y = x / constant if op == "Div" else x * constant
    back = np.clip(np.rint(y / np.float32(scale)) + np.float32(zero), fmt.qmin, fmt.qmax)
    return bool(np.array_equal(back, codes))


def fold(
    g: onnx.GraphProto,
    node: onnx.NodeProto,
    fmt: Format,
    src: QuantizerRecord,
    rec: QuantizerRecord,
) -> QuantizerRecord | None:
    """``rec`` (the quantizer of ``node``'s output) rewritten to dequantize ``src``'s codes when
    ``node`` is a Div/Mul of ``src``'s tensor by a positive scalar constant and that is an
    identity on codes; the caller then drops ``node``. None when it does not apply."""
    if node.op_type not in ("Div", "Mul") or src.kind != "qdq" or rec.kind != "qdq":
        return None
    if src.codes is None or rec.scale is None or rec.zero_point is None:
        return None
    k = list(node.input).index(src.activation) if src.activation in node.input else -1
    if k < 0 or (node.op_type == "Div" and k != 0):
        return None
    value = constant_of(g, node.input[1 - k])
    if value is None or value.dtype != np.float32 or value.size != 1:
        return None
    c = np.float32(value.reshape(()))
    if not (np.isfinite(c) and c > 0):
        return None
    if not identity_on_codes(fmt, src, node.op_type, c, rec.scale, rec.zero_point):
        return None
    return QuantizerRecord(
        rec.layer, rec.activation, rec.output, rec.format, "qdq", src.codes, rec.scale,
        rec.zero_point,
        f"{node.op_type} by {float(c):g} folded: DequantizeLinear of the input's codes, "
        f"scale {rec.scale:.6g}, zero point {int(rec.zero_point)}",
        rec.min_opset, src.node,
    )  # fmt: skip
