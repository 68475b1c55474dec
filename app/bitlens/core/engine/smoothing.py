"""SmoothQuant's multiply in the engine's graphs: a layer whose plan asks for
``smoothquant`` reads its activation through ``Mul(x, scale)`` (the scale a graph input,
fed from the recovery result), and its activation quantizer, if any, sees the product.

The quantizer *kind* of such a layer carries the prefix :data:`SMOOTH` (``"smooth+int"``,
or ``"smooth"`` without a quantizer), so the structure key of a simulation graph, and of
a layer's local graph, tells smoothed layers apart with no other change.
"""

from __future__ import annotations

from onnx import NodeProto, helper

from bitlens.core.engine import quantizers
from bitlens.core.engine.quantizers import QuantizerIO
from bitlens.core.plan import LayerChoice
from bitlens.core.recovery import Recovery

SMOOTH = "smooth"
_SEP = "+"


def smooth_kind(kind: str | None) -> str:
    """The kind of a smoothed layer whose activation quantizer is ``kind`` (None: none)."""
    return SMOOTH if kind is None else f"{SMOOTH}{_SEP}{kind}"


def split_kind(kind: str | None) -> tuple[bool, str | None]:
    """``(smoothed, quantizer kind)`` of a layer's kind."""
    if kind == SMOOTH:
        return True, None
    if kind is not None and kind.startswith(SMOOTH + _SEP):
        return True, kind[len(SMOOTH) + 1 :]
    return False, kind


def scale_input(prefix: str) -> str:
    """The graph input holding the smoothing scale of the activation ``prefix`` names."""
    return f"{prefix}__smooth"


def min_opset(kind: str) -> int:
    inner = split_kind(kind)[1]
    return 7 if inner is None else quantizers.KIND_MIN_OPSET[inner]  # Mul broadcasts from 7


def input_nodes(kind: str, x: str, y: str, prefix: str) -> tuple[list[NodeProto], QuantizerIO]:
    """Nodes computing ``y`` from the layer input ``x``: the smoothing multiply when the
    kind asks for it, then the activation quantizer (:func:`quantizers.build`)."""
    smooth, inner = split_kind(kind)
    if not smooth:
        assert inner is not None
        return quantizers.build(inner, x, y, prefix)
    mid = y if inner is None else f"{y}__smoothed"
    nodes = [helper.make_node("Mul", [x, scale_input(prefix)], [mid], name=f"{y}__smooth")]
    params = [scale_input(prefix)]
    if inner is not None:
        more, io = quantizers.build(inner, mid, y, prefix)
        nodes.extend(more)
        params.extend(io.params)
    return nodes, QuantizerIO(tuple(params))


def smoothed_kind(choice: LayerChoice, kind: str | None) -> str | None:
    """A layer's kind under ``choice``: ``kind`` (its activation quantizer's), prefixed when
    the choice asks for SmoothQuant."""
    return smooth_kind(kind) if choice.recovery is Recovery.SMOOTH else kind
