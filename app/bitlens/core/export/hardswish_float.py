"""A HardSwish the loader wrote as ``x * Clip(x + 3, 0, 6) / 6`` that stays float in the
export goes back to one ``HardSwish`` op.

The loader writes each HardSwish in that form (bitlens.core.model.hardswish) so that ONNX
Runtime runs it as QLinearAdd and QLinearMul where the target quantizes its input. Where it
does not (a weights-only plan, wider or float activations, another target), the four float
ops cost more than the one op ONNX Runtime fuses into the float convolution before it:
trueocr's text detector, every weight int8 and the activations float, ran at 1.73x the float
model's node time with the four ops against 1.08x with HardSwish (ONNX Runtime profiler, one
thread, 480x640 page). In float the two compute the same function up to float rounding.

Only the loader's form is matched, every tensor inside it plain float (nothing quantized):
``Add(x, 3) -> Clip(., 0, 6) -> Mul(x, .) -> Div(., 6)`` on the loader's scalar constants,
each intermediate read by the next op alone. A ``x * HardSigmoid(x)`` pair the loader wrote
in that form (its constants named ``PAIR_PREFIX``) goes back to the pair, at any opset, its
alpha and beta ``1 / (1/a)`` and ``(b/a) / (1/a)`` (exact: bitlens.core.model.hardswish
pair_constants).
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.export.deadconsts import drop_unread
from bitlens.core.model.hardswish import CONST_PREFIX, PAIR_PREFIX


def as_exported_hardswish(model: onnx.ModelProto, outputs: Collection[str]) -> onnx.ModelProto:
    """``model`` (the engine's graph for a plan), giving only ``outputs``, with the same
    rewrite as the export: for the fidelity check's bit-for-bit "as written" comparison.
    ``model`` itself where it has none of the loader's HardSwish constants, else a copy."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if not any(t.name.startswith(CONST_PREFIX) for t in model.graph.initializer):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    # the engine's graph also gives the tensors inside each HardSwish (their ranges)
    kept = [o for o in copy.graph.output if o.name in outputs]
    del copy.graph.output[:]
    copy.graph.output.extend(kept)
    restore_float_hardswish(copy.graph, opset)
    return copy


def restore_float_hardswish(graph: onnx.GraphProto, opset: int) -> list[str]:
    """Rewrite each plain float decomposed HardSwish of ``graph`` as one HardSwish node (in
    place; ``opset``: the export's, 14 or later has the op), and each decomposed HardSigmoid
    and Mul pair as the pair. Returns the report's notes."""
    values = {
        t.name: np.float32(numpy_helper.to_array(t))
        for t in graph.initializer if t.name.startswith(CONST_PREFIX)
    }  # fmt: skip
    consts = set(values)
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def only(name: str, op: str) -> onnx.NodeProto | None:
        found = readers.get(name, [])
        if name in outputs or len(found) != 1 or found[0].op_type != op:
            return None
        return found[0]

    drop: set[int] = set()
    new: dict[int, list[onnx.NodeProto]] = {}
    pairs = 0
    for add in graph.node:
        if add.op_type != "Add" or len(add.input) != 2 or add.input[1] not in consts:
            continue
        x = add.input[0]
        clip = only(add.output[0], "Clip")
        bounded = clip is not None and len(clip.input) == 3 and set(clip.input[1:]) <= consts
        mul = only(clip.output[0], "Mul") if bounded else None
        div = only(mul.output[0], "Div") if mul is not None and x in mul.input else None
        if div is None or div.input[1] not in consts or div.input[0] != mul.output[0]:
            continue
        name = div.name.removesuffix("/Div") or div.output[0]
        if add.input[1].startswith(PAIR_PREFIX):
            hi = values[div.input[1]]
            alpha, beta = np.float32(1) / hi, values[add.input[1]] / hi
            new[id(add)] = [
                onnx.helper.make_node("HardSigmoid", [x], [clip.output[0]], name=name,
                                      alpha=float(alpha), beta=float(beta)),
                onnx.helper.make_node("Mul", [x, clip.output[0]], [div.output[0]], name=mul.name),
            ]  # fmt: skip
            pairs += 1
        elif opset >= 14:
            new[id(add)] = [onnx.helper.make_node("HardSwish", [x], [div.output[0]], name=name)]
        else:
            continue
        drop.update(id(n) for n in (clip, mul, div))
    if not new:
        return []
    nodes = [m for n in graph.node if id(n) not in drop for m in new.get(id(n), [n])]
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unread(graph, consts)  # the form's constants nothing reads now
    notes = []
    if len(new) > pairs:
        notes.append(
            f"{len(new) - pairs} HardSwish op(s) left float by the plan written as HardSwish "
            "again (one op ONNX Runtime fuses into the float Conv before it)"
        )
    if pairs:
        notes.append(
            f"{pairs} x * HardSigmoid(x) pair(s) left float by the plan written as the pair "
            "again (two float ops instead of four)"
        )
    return notes
