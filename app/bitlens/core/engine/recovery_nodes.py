"""Nodes the engine's graphs add for a layer's recovery method (bitlens.core.recovery).

* SmoothQuant: the layer reads its activation through ``Mul(x, scale)`` (the scale a
  graph input fed from the recovery result), and its activation quantizer, if any, sees
  the product.
* Bias correction on a layer without a bias: the layer gets one, a graph input fed with
  the correction (Conv's B, Gemm's C, or an Add after a MatMul, as exporters write a
  linear layer).

The quantizer *kind* of such a layer carries a flag (``"smooth+int"``, ``"bias+int"``;
``"smooth"`` or ``"bias"`` without a quantizer), so the structure key of a simulation
graph, and of a layer's local graph, tells these layers apart with no other change.
"""

from __future__ import annotations

from onnx import GraphProto, NodeProto, ValueInfoProto, helper

from bitlens.core.engine import quantizers
from bitlens.core.engine.graphs import value_info
from bitlens.core.engine.quantizers import QuantizerIO
from bitlens.core.model.types import Layer, ModelInfo
from bitlens.core.plan import LayerChoice
from bitlens.core.recovery import Recovery

SMOOTH = "smooth"
BIAS = "bias"
_SEP = "+"


def recovery_kind(layer: Layer, choice: LayerChoice, kind: str | None) -> str | None:
    """A layer's kind under ``choice``: ``kind`` (its activation quantizer's), flagged when
    the choice's method adds nodes."""
    if choice.recovery is Recovery.SMOOTH:
        flag = SMOOTH
    elif choice.recovery is Recovery.BIAS and not layer.biases:
        flag = BIAS
    else:
        return kind
    return flag if kind is None else f"{flag}{_SEP}{kind}"


def split_kind(kind: str | None) -> tuple[str | None, str | None]:
    """``(flag or None, quantizer kind or None)`` of a layer's kind."""
    for flag in (SMOOTH, BIAS):
        if kind == flag:
            return flag, None
        if kind is not None and kind.startswith(flag + _SEP):
            return flag, kind[len(flag) + 1 :]
    return None, kind


def scale_input(prefix: str) -> str:
    """The graph input holding the smoothing scale of the activation ``prefix`` names."""
    return f"{prefix}__smooth"


def bias_input(layer: str) -> str:
    """The graph input holding the bias created for ``layer``."""
    return f"{layer}__created_bias"


def min_opset(kind: str) -> int:
    inner = split_kind(kind)[1]
    return 7 if inner is None else quantizers.KIND_MIN_OPSET[inner]  # Mul, Add broadcast from 7


def input_nodes(kind: str, x: str, y: str, prefix: str) -> tuple[list[NodeProto], QuantizerIO]:
    """Nodes computing ``y`` from the layer input ``x``: the smoothing multiply when the
    kind asks for it, then the activation quantizer (:func:`quantizers.build`)."""
    flag, inner = split_kind(kind)
    if flag != SMOOTH:
        if inner is None:  # a created bias and no quantizer: the input as it is
            return [helper.make_node("Identity", [x], [y], name=f"{y}__input")], QuantizerIO(())
        return quantizers.build(inner, x, y, prefix)
    mid = y if inner is None else f"{y}__smoothed"
    nodes = [helper.make_node("Mul", [x, scale_input(prefix)], [mid], name=f"{y}__smooth")]
    params = [scale_input(prefix)]
    if inner is not None:
        more, io = quantizers.build(inner, mid, y, prefix)
        nodes.extend(more)
        params.extend(io.params)
    return nodes, QuantizerIO(tuple(params))


def with_bias(node: NodeProto, op_type: str, bias: str) -> list[NodeProto]:
    """``node`` (a Conv, Gemm or MatMul without a bias) with the bias tensor ``bias``
    added: as Conv's B or Gemm's C, or an Add after a MatMul that writes its output."""
    if op_type in ("Conv", "Gemm"):
        node.input.append(bias)
        return [node]
    out = node.output[0]
    node.output[0] = f"{out}__unbiased"
    add = helper.make_node("Add", [node.output[0], bias], [out], name=f"{out}__bias")
    return [node, add]


def add_created_biases(graph: GraphProto, info: ModelInfo, kinds) -> list[ValueInfoProto]:
    """Give each main-graph layer whose kind is flagged :data:`BIAS` its bias, in place;
    returns the new graph inputs."""
    layers = {
        info.layer(n).outputs[0]: info.layer(n)
        for n, k in kinds.items()
        if split_kind(k)[0] == BIAS
    }
    if not layers:
        return []
    nodes: list[NodeProto] = []
    for node in graph.node:
        layer = layers.get(node.output[0]) if node.output else None
        nodes.extend([node] if layer is None else with_bias(node, layer.op_type, bias_input(layer.name)))
    del graph.node[:]
    graph.node.extend(nodes)
    return [value_info(bias_input(la.name), "float32", None) for la in layers.values()]


def add_created_biases_local(
    node: NodeProto, layer: Layer, kind: str | None, inputs: dict[str, ValueInfoProto]
) -> list[NodeProto]:
    """The layer's node in a local graph (:func:`rewrite.build_local`), with its created
    bias when the kind says, the bias added to ``inputs``."""
    if split_kind(kind)[0] != BIAS:
        return [node]
    name = bias_input(layer.name)
    inputs.setdefault(name, value_info(name, "float32", None))
    return with_bias(node, layer.op_type, name)
