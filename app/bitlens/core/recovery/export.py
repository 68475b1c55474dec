"""What the exporter and the fidelity check read of a layer's recovery: the same
:class:`~bitlens.core.recovery.Recovered` value the engine fed, so the file holds exactly
the weights and bias that were evaluated."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.engine.rewrite import BIASED, bias_reader
from bitlens.core.errors import ExportError
from bitlens.core.export.graph import GraphBuilder, rename_output
from bitlens.core.recovery import Recovered

if TYPE_CHECKING:
    from bitlens.core.engine.engine import Engine
    from bitlens.core.export.editing import ExportState
    from bitlens.core.model.types import Layer, WeightInfo
    from bitlens.core.quantized import QuantizedModel


def planned_bias(engine: Engine, qm: QuantizedModel, layer: str, name: str) -> np.ndarray:
    """The bias ``name`` of ``layer`` as the engine feeds it under ``qm``'s plan: the
    layer's own corrected (or created) bias where it asks for bias correction, else the
    model's. By layer, not by name: readers of one shared bias each have their own."""
    rec = qm.recovered.get(layer)
    if rec is not None and rec.bias is not None:
        biases = engine.info.layer(layer).biases  # none: made by create_bias
        return rec.bias.astype(np.float32).reshape(biases[0].shape if biases else (-1,))
    return np.asarray(engine.model.weight(name)).astype(np.float32, copy=False)


def write_bias(state: ExportState, layer: Layer, rec: Recovered) -> str | None:
    """Replace the layer's bias initializer by the corrected one (or give a layer without
    a bias the created one); a note, or None."""
    if rec.bias is None:
        return None
    if not layer.biases:
        return create_bias(state, layer, rec.bias)
    b = layer.biases[0]
    if state.consumers(b.name) != 1:
        return _own_bias(state, layer, b, rec)
    g = state.model.graph
    for i, t in enumerate(g.initializer):
        if t.name == b.name:
            value = rec.bias.astype(np.dtype(b.dtype)).reshape(b.shape)
            g.initializer[i].CopyFrom(numpy_helper.from_array(value, b.name))
            return f"bias {b.name} corrected for the weight rounding ({rec.note})"
    raise ExportError(f"layer {layer.name!r}: bias {b.name!r} is not an initializer")


def own_bias_prefix(bias: str, layer: str) -> str:
    """The start of the name of ``layer``'s own corrected copy of the shared ``bias``."""
    return f"{bias}_of_{layer}"


def _own_bias(state: ExportState, layer: Layer, b: WeightInfo, rec: Recovered) -> str:
    """A corrected bias that other nodes read too: this layer reads its own copy (each
    reader's correction cancels its own weight's rounding, as the engine feeds it, see
    ``rewrite.shared_biases``); the last reader left gets the original, in place."""
    assert rec.bias is not None
    g = state.model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    # a MatMul's bias is the Add constant after it (model/add_bias.py: ALBERT's shared layers)
    node = bias_reader(layer, producer, consumers)
    slots = [] if node is None else [i for i, name in enumerate(node.input) if name == b.name]
    wanted = [0, 1] if layer.op_type == "MatMul" else [2]
    if layer.op_type not in BIASED or len(slots) != 1 or slots[0] not in wanted:
        raise ExportError(
            f"layer {layer.name!r}: bias {b.name!r} is shared with other nodes and not read "
            "where the layer's bias goes; bias correction needs a bias of its own"
        )
    assert node is not None
    own = GraphBuilder(own_bias_prefix(b.name, layer.name), state.taken)
    value = rec.bias.astype(np.dtype(b.dtype)).reshape(b.shape)
    node.input[slots[0]] = own.const("corrected", value)
    g.initializer.extend(own.initializers)
    return f"bias {b.name} (shared) corrected for this layer's weight rounding ({rec.note})"


CREATED_ADD = "created_add"


def _created(layer: str) -> str:
    """The start of the name of the bias :func:`create_bias` makes for ``layer``."""
    return f"{layer}_bias_created"


def layer_node_of(nodes: Mapping[str, onnx.NodeProto], layer: Layer) -> onnx.NodeProto | None:
    """The exported node of ``layer`` in ``nodes`` (output -> node): the one writing its
    output, or the MatMul before the Add :func:`create_bias` put there."""
    node = nodes.get(layer.outputs[0])
    if node is not None and node.op_type == "Add" and node.name.startswith(
        f"{layer.name}_bias_{CREATED_ADD}"
    ):
        return nodes.get(node.input[0])
    return node


def create_bias(state: ExportState, layer: Layer, bias: np.ndarray) -> str:
    """The bias bias correction made for a layer that had none, written as the engine ran
    it (``bitlens.core.engine.recovery_nodes.with_bias``): Conv's B, Gemm's C, or an Add
    right after a MatMul that takes over the MatMul's output name."""
    g = state.model.graph
    idx, node = state.node_producing(g, layer.outputs[0])
    b = GraphBuilder(f"{layer.name}_bias", state.taken)
    const = b.const("created", np.asarray(bias, np.float32).reshape(-1))
    assert const.startswith(_created(layer.name))
    if layer.op_type in ("Conv", "Gemm"):
        node.input.append(const)
    else:
        out = layer.outputs[0]
        unbiased = b.name(f"{out}_unbiased")
        node.output[0] = unbiased
        add = helper.make_node("Add", [unbiased, const], [out], name=b.name(CREATED_ADD))
        g.node.insert(idx + 1, add)
        # what was to go before the MatMul (its activation quantizers) still goes there
        if out in state.before:
            state.before[unbiased] = state.before.pop(out)
    g.initializer.extend(b.initializers)
    return f"bias created for the weight rounding ({bias.size} values)"


def scale_decoded(b: GraphBuilder, weight: str, input_scale: np.ndarray) -> None:
    """Make the decode subgraph of ``weight`` end in an exact float32 multiply by the
    per-input-channel ``input_scale`` (AWQ's 1/s): the same product the engine computed,
    folded to a constant when the session starts."""
    inner = b.name("awq_decoded")
    rename_output(b, weight, inner)
    b.node("Mul", [inner, b.const("awq_inv_scale", input_scale.astype(np.float32))], weight)


def smooth_inputs(state: ExportState, layer: Layer, rec: Recovered | None) -> dict[str, str]:
    """SmoothQuant's exact multiply of the layer's activation by ``rec.act_scale``, inserted
    before the layer (and before its activation quantizer, written after this); the layer
    reads the product. Returns activation -> scaled tensor ({} when not smoothed)."""
    if rec is None or rec.act_scale is None:
        return {}
    _, node = state.node_producing(state.model.graph, layer.outputs[0])
    out: dict[str, str] = {}
    for act in layer.activations:
        b = GraphBuilder(f"{layer.name}_smooth", state.taken)
        scaled = b.node("Mul", [act, b.const("scale", rec.act_scale.astype(np.float32))],
                        b.name(f"{act}_smoothed"))  # fmt: skip
        for i, name in enumerate(node.input):
            if name == act:
                node.input[i] = scaled
        state.model.graph.initializer.extend(b.initializers)
        state.before.setdefault(layer.outputs[0], []).extend(b.nodes)
        out[act] = scaled
    return out
