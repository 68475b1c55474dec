"""Biases stored as int32 at scale s_x * s_w, the form ONNX Runtime's integer kernels take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from bitlens.core.engine.kernel_bias import dequantized, int32_grid, output_axis
from bitlens.core.export.biasstore import compact_bias
from bitlens.core.export.editing import ExportState
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.model.types import Layer, Storage, WeightInfo
from bitlens.core.recovery.export import own_bias_prefix

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

@dataclass(frozen=True)
class BiasRecord:
    """A float bias stored as int32 so an integer kernel can take it."""

    bias: str  # the float bias tensor of the source model
    feeds: str  # the DequantizeLinear output the layer now reads
    scale: str  # "s_x * s_w" per tensor or per channel, for the report
    max_error: float  # largest |dequantized int32 bias - float bias|


def _bias_add(
    g: onnx.GraphProto, tensor: str, state: ExportState
) -> tuple[onnx.NodeProto | None, int]:
    """The Add that alone consumes ``tensor`` with a constant as its other input, also
    through float-to-float Casts (open_nsfw's head: MatMul -> Cast -> Add), which ONNX
    Runtime removes before it fuses MatMul + Add into a Gemm."""
    users = [n for n in g.node if tensor in n.input]
    while len(users) == 1 and _float_cast(users[0]):
        tensor = users[0].output[0]
        users = [n for n in g.node if tensor in n.input]
    if len(users) != 1 or users[0].op_type != "Add" or len(users[0].input) != 2:
        return None, 0
    add = users[0]
    slot = 1 if add.input[0] == tensor else 0
    return (add, slot) if state.initializer(g, add.input[slot]) is not None else (None, 0)


def _float_cast(node: onnx.NodeProto) -> bool:
    # The MatMul's output is float32 (a kernel layer's), so a Cast to float is an identity.
    to = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "to"), None)
    return node.op_type == "Cast" and to == onnx.TensorProto.FLOAT


def int32_bias(
    engine: Engine,
    state: ExportState,
    layer: Layer,
    act_scale: np.float32,
    weight_scale: np.ndarray,
    notes: list[str],
) -> BiasRecord | None:
    """Store the layer's float bias as int32 at scale s_x * s_w (what QGemm/QLinearConv take).

    For MatMul the bias is the constant of the Add that follows it (what exporters
    write for a linear layer): ONNX Runtime fuses MatMul + Add into Gemm before it looks
    for QDQ groups, and a float C then keeps that Gemm in float, dequantizing the weight
    on every run; with an int32 C it becomes QGemm.
    """
    g = state.model.graph
    _, node = state.node_producing(g, layer.outputs[0])
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    w = layer.weights[0]
    if layer.op_type == "MatMul":
        target, slot = _bias_add(g, layer.outputs[0], state)
        # only the bias the model's layer lists (model/add_bias.py), or this layer's own
        # bias-corrected copy of it (recovery/export.py): the engine rounds that one alone
        # (kernel_bias.bias_layers; a bias other nodes read too from the layer's own input,
        # rewrite.shared_biases), and editing an Add outside the layer's tensors put the
        # per-layer byte accounting off (open_nsfw's head, before add_bias looked
        # through its Cast)
        if target is None or not layer.biases:
            return None
        listed = layer.biases[0].name
        if target.input[slot] != listed and not target.input[slot].startswith(
            own_bias_prefix(listed, layer.name)
        ):
            return None
        name = target.input[slot]
    elif layer.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2]:
        target, slot, name = node, 2, node.input[2]
    else:
        return None
    init = state.initializer(g, name)
    if init is None:
        notes.append(f"bias {name} is not a constant; kept float")
        return None
    if layer.op_type == "Gemm" and (
        attrs.get("beta", 1.0) != 1.0 or attrs.get("alpha", 1.0) != 1.0
    ):
        notes.append("Gemm alpha/beta are not 1; bias kept float (no QGemm)")
        return None
    bias = np.asarray(engine.model.tensor_value(init))  # may be in an external file
    # the engine rounds its simulated bias with the same function (engine/kernel_bias.py)
    grid = int32_grid(bias, act_scale, weight_scale, w.shape[output_axis(layer, attrs)])
    if isinstance(grid, str):
        notes.append(f"bias {name} {grid}; kept float")
        return None
    q, scale = grid
    b = GraphBuilder(f"{name}_i32", state.taken)
    qn, sn = compact_bias(b, state, q, np.float32(act_scale), weight_scale, scale, w.name)
    attrs_dq = {"axis": q.ndim - 1} if scale.ndim == 1 else {}  # the output channels
    out = b.node("DequantizeLinear", [qn, sn], **attrs_dq)  # type: ignore[arg-type]
    target.input[slot] = out
    # A bias shared by several layers (an unrolled LSTMCell's Gemms all read one bias_ih) gets
    # an int32 copy per layer, each at its own s_x * s_w: ONNX Runtime fuses a Gemm into QGemm
    # only when every input, C included, is a DequantizeLinear output (GemmNodeGroupSelector in
    # onnxruntime/core/optimizer/qdq_transformer/selectors_actions/qdq_selectors.cc). The float
    # bias goes once its last reader has its copy.
    if state.consumers(name) == 0:
        state.remove_weight(
            g, WeightInfo(name, bias.shape, "float32", Storage.INITIALIZER, "", 0, 0)
        )
    g.initializer.extend(b.initializers)
    state.before.setdefault(layer.outputs[0], []).extend(b.nodes)
    err = float(np.max(np.abs(dequantized(q, scale) - bias)))
    return BiasRecord(name, out, "s_x * s_w per channel" if scale.ndim else "s_x * s_w", err)
