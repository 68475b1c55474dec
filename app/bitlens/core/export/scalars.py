"""Scalar constants a deployment target lets into a QLinear op, written as DequantizeLinear.

ONNX Runtime fuses ``DequantizeLinear -> Add -> QuantizeLinear`` into
``QLinearAdd`` only when *every* input of the Add comes from a
DequantizeLinear; a HardSwish written ``x * Clip(x + 3, 0, 6) / 6`` adds a
float constant. :func:`bitlens.core.targets.scalar_code` gives each such
constant a uint8 code, scale and zero point whose DequantizeLinear is the
constant itself, bit for bit, so the engine's simulation (which reads the
float constant) is unchanged and needs no quantizer for it.
"""

from __future__ import annotations

import numpy as np
import onnx

from bitlens.core.export import deadconsts
from bitlens.core.export.editing import ExportState
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.model import tensors
from bitlens.core.quantized import QuantizedModel
from bitlens.core.targets import Scalar, scalar_code, scalar_inputs


def write_scalar_inputs(state: ExportState, qm: QuantizedModel, scalar: Scalar) -> list[str]:
    """Replace every main-graph read of the target's scalar constants by an exact
    DequantizeLinear of one code; returns notes for the export report."""
    found = scalar_inputs(qm.plan, qm.placed, scalar)
    if not found:
        return []
    g = state.model.graph
    shapes = {t.name: tuple(t.dims) for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and n.output and n.output[0] in found:
            shapes[n.output[0]] = tensors.constant_value(n).shape
    renamed: dict[str, str] = {}
    first: list[onnx.NodeProto] = []
    for name, value in found.items():
        code, scale, zp = scalar_code(value)
        assert np.float32(code - zp) * np.float32(scale) == np.float32(value)
        b = GraphBuilder(f"{name}_dq", state.taken)
        # the constant's own shape (a [1] or [1,1,1,1] constant broadcasts differently)
        codes = b.const("code", np.full(shapes.get(name, ()), code, np.uint8))
        s = b.const("scale", np.asarray(scale, np.float32))
        z = b.const("zero_point", np.asarray(zp, np.uint8))
        renamed[name] = b.node("DequantizeLinear", [codes, s, z], b.name(f"{name}_exact"))
        g.initializer.extend(b.initializers)
        first.extend(b.nodes)
    for node in g.node:
        for i, t in enumerate(node.input):
            if t in renamed:
                node.input[i] = renamed[t]
    # The DequantizeLinears read only their own initializers: they go first.
    ordered = [*first, *g.node]
    del g.node[:]
    g.node.extend(ordered)
    deadconsts.drop_unread(g, found)  # the float scalars no node reads now
    return [
        f"target: {len(found)} scalar constant(s) of HardSwish-style Adds written as exact "
        "DequantizeLinear codes (3.0 is code 1 at scale 3), so the Adds run as QLinearAdd"
    ]
