"""A softmax written out as Exp / ReduceSum(Exp), and the axis its classes lie on.

Before opset 13, ONNX's Softmax normalizes every axis from ``axis`` on, flattened together
(https://onnx.ai/onnx/operators/onnx__Softmax.html), so an exporter that needs a softmax over
one inner axis writes it out. tf2onnx does so for Keras' channels-last softmax at opset 12
(tf2onnx/onnx_opset/nn.py, ``Softmax.version_1``): ReduceMax, Sub, Exp and ReduceSum over
the channel axis of the NCHW tensor, then a Transpose to NHWC before the Div
(napari-czann-segment's nucleus U-Net: ``Identity:0`` [N, 1024, 1024, 2]). Read as a Div
only, such an output got SQNR and cosine but no per-pixel top-1, which a Softmax op gets.
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

# Ops between the Exp and the Div that only move the numerator's values (Transposes are
# followed, to map the reduced axis onto the output's) or reshape the denominator.
_NUMERATOR_OPS = frozenset({"Transpose", "Identity"})
_DENOMINATOR_OPS = frozenset({"Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze"})


def _back(nodes: dict[str, onnx.NodeProto], name: str, through: frozenset[str]):
    """The first node computing ``name`` that is not in ``through``, and the nodes passed."""
    passed: list[onnx.NodeProto] = []
    node = nodes.get(name)
    while node is not None and node.op_type in through and node.input and len(passed) < 16:
        passed.append(node)
        node = nodes.get(node.input[0])
    return node, passed


def _reduced_axes(graph: onnx.GraphProto, nodes: dict[str, onnx.NodeProto], node) -> list[int]:
    """ReduceSum's axes: an attribute before opset 13, a constant second input from it."""
    for a in node.attribute:
        if a.name == "axes":
            return [int(v) for v in a.ints]
    if len(node.input) < 2 or not node.input[1]:
        return []  # every axis: not a softmax over one
    name = node.input[1]
    for init in graph.initializer:
        if init.name == name:
            return [int(v) for v in numpy_helper.to_array(init).reshape(-1)]
    const = nodes.get(name)
    if const is not None and const.op_type == "Constant":
        for a in const.attribute:
            if a.name == "value":
                return [int(v) for v in numpy_helper.to_array(a.t).reshape(-1)]
    return []


def softmax_written_out(
    graph: onnx.GraphProto, nodes: dict[str, onnx.NodeProto], name: str
) -> int | None:
    """The class axis of output ``name`` (in the output's own axes) when a Div computes it
    from an Exp and a ReduceSum over one axis of that same Exp; None otherwise.

    ``nodes`` maps each tensor to the node computing it. A negative axis is mapped through
    the numerator's Transposes only once their rank is known (a perm's length).
    """
    div = nodes.get(name)
    if div is None or div.op_type != "Div" or len(div.input) != 2:
        return None
    exp, moves = _back(nodes, div.input[0], _NUMERATOR_OPS)
    total, _ = _back(nodes, div.input[1], _DENOMINATOR_OPS)
    if exp is None or exp.op_type != "Exp" or total is None or total.op_type != "ReduceSum":
        return None
    if total.input[0] != exp.output[0]:
        return None
    axes = _reduced_axes(graph, nodes, total)
    if len(axes) != 1:
        return None
    axis = axes[0]
    for node in reversed(moves):  # from the Exp towards the Div
        if node.op_type != "Transpose":
            continue
        perm = [int(v) for a in node.attribute if a.name == "perm" for v in a.ints]
        if not perm:
            return None  # the default perm reverses the axes of a rank not known here
        axis = perm.index(axis % len(perm))
    return axis
