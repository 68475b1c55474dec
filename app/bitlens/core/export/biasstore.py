"""How an integer kernel's int32 bias is stored: as few bytes as ONNX Runtime still fuses.

An integer-kernel layer's bias is ``DequantizeLinear(int32 codes, s_x * s_w)``
(bitlens.core.export.bias). Stored as is, a per-channel bias costs 8 bytes per output
channel (int32 codes and a float32 scale), where ``quantize_static`` stores a MatMul's
bias as a uint8 input of an activation-quantized Add (1 byte): 1.3% of a transformer's
W8A8 file. Two things shrink it without changing a value:

* the scale vector is not stored: it is ``Mul(s_x, s_w)`` of the activation's scalar step
  and the weight's stored per-channel scales, a float32 product (correctly rounded, the
  same bits as numpy's);
* the codes are stored in the narrowest of int8 / int16 that holds them, under a
  ``Cast`` to int32.

ONNX Runtime folds both at session start (constant folding runs before its QDQ
fusions, https://onnxruntime.ai/docs/performance/model-optimizations/graph-optimizations.html),
so the kernel sees the same int32 initializer and fuses as before (QGemm, QLinearConv).
Only where it saves bytes: a vector of at least ``MIN_CHANNELS`` entries.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.export.editing import ExportState
from bitlens.core.export.graph import GraphBuilder

MIN_CHANNELS = 32  # below this the Mul/Cast nodes and their names weigh more than they save


def compact_bias(
    b: GraphBuilder,
    state: ExportState,
    codes: np.ndarray,
    act_scale: np.float32,
    weight_scale: np.ndarray,
    scale: np.ndarray,
    weight: str,
) -> tuple[str, str]:
    """(codes, scale) tensor names for the bias DequantizeLinear: ``codes`` (int32) and
    ``scale`` (``act_scale * weight_scale``, float32) as stored or as computed in the graph."""
    if codes.ndim != 1 or codes.size < MIN_CHANNELS:
        return b.const("codes", codes), b.const("scale", scale)
    for dtype in (np.int8, np.int16):
        info = np.iinfo(dtype)
        if codes.min() >= info.min and codes.max() <= info.max:
            qn = b.node("Cast", [b.const("codes", codes.astype(dtype))], to=onnx.TensorProto.INT32)
            break
    else:
        qn = b.const("codes", codes)
    stored = _weight_scale_tensor(state, weight, weight_scale)
    if stored is None or scale.ndim != 1:
        return qn, b.const("scale", scale)
    return qn, b.node("Mul", [b.const("act_scale", np.asarray(act_scale, np.float32)), stored])


def _weight_scale_tensor(state: ExportState, weight: str, value: np.ndarray) -> str | None:
    """The initializer holding the weight's DequantizeLinear scale when its bits equal
    ``value`` (so the product is the one the engine computed), else None."""
    g = state.model.graph
    pending = [n for nodes in (*state.prepend.values(), *state.before.values()) for n in nodes]
    dq = next(
        (n for n in [*g.node, *pending] if n.op_type == "DequantizeLinear" and weight in n.output),
        None,
    )
    if dq is None or len(dq.input) < 2:
        return None
    init = next((t for t in g.initializer if t.name == dq.input[1]), None)
    if init is None:
        return None
    have = numpy_helper.to_array(init)
    want = np.asarray(value, np.float32)
    if have.dtype != want.dtype or have.shape != want.shape or have.tobytes() != want.tobytes():
        return None
    return init.name
