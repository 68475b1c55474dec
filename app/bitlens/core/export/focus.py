"""A YOLOv5 Focus stem on uint8 codes written as one SpaceToDepth (target ort-cpu).

The Focus stem slices the image into its four pixel phases (``x[..., 0::2, 0::2]``,
``x[..., 1::2, 0::2]``, ...: eight Slices as exporters write it) and concatenates them on
the channels before the first conv. The ort-cpu target quantizes it on the image's grid
(bitlens.core.targets ``_move_up``), so the export slices uint8 codes; but ONNX Runtime's
Slice with a step of 2 along the last axis is slow on uint8 (272 us for each of the four
on ddddocr's common_det, 1 x 3 x 416 x 416, against 116 us on float32 in ONNX Runtime's
own QDQ file). The four phases *are* ``SpaceToDepth(x, 2)``, only in another channel
order, so the export writes one SpaceToDepth of the image's codes and permutes the
conv's input channels in its weight instead (a Gather on the int8 codes, which ONNX
Runtime folds into a constant at load): per-node profile, one thread, Slices + Concat +
QuantizeLinear 971 us (ORT's file) against 309 us, the same codes reaching the same
QLinearConv, whose int32 sums do not depend on the channel order.

Every quantizer inside the Focus requantizes on the image's grid (an exact identity),
so the ones the rewrite removes change no value; the fidelity check maps the weight
back to the source channel order and, in the simulated form, gathers the conv's input
back into the Focus order (:func:`restore`), which is exact data movement. Like the stem
rewrite it needs ONNX Runtime 1.28 or later (bitlens.core.export.spacetodepth.MIN_ORT).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core import targets
from bitlens.core.engine import graphs
from bitlens.core.export import spacetodepth
from bitlens.core.export.graph import GraphBuilder, used_names

if TYPE_CHECKING:
    from bitlens.core.engine import Engine
    from bitlens.core.export.activations import QuantizerRecord
    from bitlens.core.export.records import LayerExport
    from bitlens.core.quantized import QuantizedModel


@dataclass(frozen=True)
class FocusRecord:
    """A Focus stem replaced by SpaceToDepth, for the fidelity check to undo."""

    node: str  # the conv reading the phases
    weight: str  # its weight (DequantizeLinear output), input channels permuted
    codes: str  # the stored weight codes (source channel order)
    source: tuple[int, ...]  # the SpaceToDepth channel each source input channel reads
    gather: str  # the node permuting the weight codes


def _const(inits: Mapping[str, onnx.TensorProto], name: str) -> np.ndarray | None:
    t = inits.get(name)
    return None if t is None else numpy_helper.to_array(t)


def _same(inits: Mapping[str, onnx.TensorProto], a: onnx.NodeProto, b: onnx.NodeProto) -> bool:
    """Two Q/DQ nodes on the same grid: equal scale and zero point bits."""
    if len(a.input) != len(b.input):
        return False
    for x, y in zip(a.input[1:], b.input[1:], strict=True):
        u, v = _const(inits, x), _const(inits, y)
        if u is None or v is None or u.dtype != v.dtype or u.tobytes() != v.tobytes():
            return False
    return True


def _phase(
    t: str,
    producer: Mapping[str, onnx.NodeProto],
    inits: Mapping[str, onnx.TensorProto],
    grid: onnx.NodeProto,
    chain: list[onnx.NodeProto],
) -> tuple[str, dict[int, int]] | None:
    """(the tensor the Slices start from, axis -> start) of one Concat input: step-2 Slices
    on axes 2 and 3, through QuantizeLinear/DequantizeLinear pairs on ``grid``'s grid."""
    starts: dict[int, int] = {}
    while True:
        n = producer.get(t)
        src = producer.get(n.input[0]) if n is not None else None
        if (
            n is not None
            and n.op_type == "QuantizeLinear"
            and (src is None or src.op_type != "Slice")
        ):
            return (t, starts) if set(starts) == {2, 3} else None  # the image's codes
        if n is not None and n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            if not _same(inits, n, grid):
                return None
        elif n is not None and n.op_type == "Slice" and len(n.input) == 5:
            vals = [_const(inits, i) for i in n.input[1:]]
            if any(v is None or v.size != 1 for v in vals):
                return None
            start, end, axis, step = (int(v.reshape(-1)[0]) for v in vals)  # type: ignore[union-attr]
            if axis not in (2, 3) or step != 2 or start not in (0, 1) or end < 2**20:
                return None
            if axis in starts:
                return None
            starts[axis] = start
        else:
            return (t, starts) if set(starts) == {2, 3} else None
        chain.append(n)
        t = n.input[0]


def rewrite(
    model: onnx.ModelProto,
    engine: Engine,
    qm: QuantizedModel,
    records: Mapping[str, LayerExport],
    tensor_records: Mapping[str, QuantizerRecord],
    taken: set[str],
) -> tuple[dict[str, LayerExport], dict[str, QuantizerRecord]]:
    """Rewrite the Focus stems of the finished export; returns the records (the conv's
    with the rewrite; the removed identity quantizers left out)."""
    out, tensors = dict(records), dict(tensor_records)
    if qm.plan.target != targets.ORT_CPU or not spacetodepth.available():
        return out, tensors
    g = model.graph
    for cat in [n for n in g.node if n.op_type == "Concat" and len(n.input) == 4]:
        done = _rewrite_one(model, engine, cat, records, taken)
        if done is not None:
            name, rec = done
            out[name] = replace(
                out[name], focus=rec,
                notes=(*out[name].notes, "its Focus stem written as one SpaceToDepth of the "
                       "image's codes, the input channels permuted in the weight"),
            )  # fmt: skip
    produced = {o for n in g.node for o in n.output}
    tensors = {t: q for t, q in tensors.items() if (q.codes or q.output) in produced}
    return out, tensors


def _rewrite_one(
    model: onnx.ModelProto,
    engine: Engine,
    cat: onnx.NodeProto,
    records: Mapping[str, LayerExport],
    taken: set[str],
) -> tuple[str, FocusRecord] | None:
    g = model.graph
    a = {x.name: helper.get_attribute_value(x) for x in cat.attribute}
    if a.get("axis") != 1:
        return None
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    inits = {t.name: t for t in g.initializer}
    # the Concat's output quantizer and its DequantizeLinear, read by one integer-kernel conv
    q_cat = readers.get(cat.output[0], [])
    if len(q_cat) != 1 or q_cat[0].op_type != "QuantizeLinear":
        return None
    q_cat = q_cat[0]
    dq_cat = readers.get(q_cat.output[0], [])
    if len(dq_cat) != 1 or dq_cat[0].op_type != "DequantizeLinear":
        return None
    dq_cat = dq_cat[0]
    convs = readers.get(dq_cat.output[0], [])
    if len(convs) != 1 or convs[0].op_type != "Conv" or convs[0].input[0] != dq_cat.output[0]:
        return None
    conv = convs[0]
    rec = next((r for r in records.values() if r.integer_kernel and r.op_type == "Conv"
                and engine.info.layer(r.name).outputs[0] in conv.output), None)  # fmt: skip
    ca = {x.name: helper.get_attribute_value(x) for x in conv.attribute}
    if rec is None or ca.get("group", 1) != 1 or len(rec.weights) != 1:
        return None
    w_dq = producer.get(conv.input[1])
    if w_dq is None or w_dq.op_type != "DequantizeLinear" or w_dq.input[0] not in inits:
        return None
    if len(readers.get(conv.input[1], [])) != 1 or len(readers.get(w_dq.input[0], [])) != 1:
        return None
    # the four phases, from one quantized graph input
    chain: list[onnx.NodeProto] = []
    phases = [_phase(t, producer, inits, q_cat, chain) for t in cat.input]
    if any(p is None for p in phases):
        return None
    roots = {p[0] for p in phases}  # type: ignore[index]
    order = [p[1][2] * 2 + p[1][3] for p in phases]  # type: ignore[index]
    if len(roots) != 1 or sorted(order) != [0, 1, 2, 3]:
        return None
    root = producer.get(next(iter(roots)))  # the image's QuantizeLinear
    if root is None or root.op_type != "QuantizeLinear" or not _same(inits, root, q_cat):
        return None
    image = next((t for t in engine.info.inputs if t.name == root.input[0]), None)
    if image is None or len(image.shape) != 4:
        return None
    c, h, w = image.shape[1:]
    if not all(isinstance(d, int) and d > 0 for d in (c, h, w)) or h % 2 or w % 2:
        return None
    codes = numpy_helper.to_array(inits[w_dq.input[0]])
    if codes.ndim != 4 or codes.shape[1] != 4 * c:
        return None
    # source channel i * C + k (Concat input i) is SpaceToDepth channel order[i] * C + k
    source = tuple(order[i] * c + k for i in range(4) for k in range(c))
    gather = [0] * (4 * c)
    for i, s in enumerate(source):
        gather[s] = i
    b = GraphBuilder(f"{rec.name}_focus", taken)
    b.node("SpaceToDepth", [root.output[0]], q_cat.output[0], blocksize=2)
    permuted = b.node("Gather", [w_dq.input[0], b.const("channels", np.array(gather, np.int64))],
                      axis=1)  # fmt: skip
    record = FocusRecord(conv.name, conv.input[1], w_dq.input[0], source, b.nodes[1].name)
    w_dq.input[0] = permuted
    # drop the Slices, the Concat, its QuantizeLinear and the identity pairs between them
    gone = {id(n) for n in chain} | {id(cat), id(q_cat)}
    nodes: list[onnx.NodeProto] = []
    for n in g.node:
        if n is w_dq:
            nodes.append(b.nodes[1])
        if id(n) not in gone:
            nodes.append(n)
        if n is root:
            nodes.append(b.nodes[0])
    read = {i for n in nodes for i in n.input} | {o.name for o in g.output}
    # a DequantizeLinear of the image's codes that only the Slices read goes too
    kept = [n for n in nodes if n.op_type != "DequantizeLinear" or n.output[0] in read]
    # by identity, as one set: upb keeps one wrapper per node while it is referenced (kept
    # holds them), and a scan of kept per node was quadratic (1.5 s of CPU per rewrite on
    # ddddocr's detector under a profiler, 9 rewrites a search: docs/finding-a-plan.md)
    kept_ids = {id(k) for k in kept}
    _drop_inputs_of(g, [n for n in g.node if id(n) not in kept_ids], kept)
    del g.node[:]
    g.node.extend(kept)
    g.initializer.extend(b.initializers)
    return rec.name, record


def _drop_inputs_of(
    g: onnx.GraphProto, removed: list[onnx.NodeProto], kept: list[onnx.NodeProto]
) -> None:
    """The initializers only ``removed`` read (the Slices' starts, ends, axes and steps, the
    identity quantizers' scales and zero points) leave the file with them: ONNX Runtime
    warns of each initializer no node reads when it loads the file."""
    gone = {i for n in removed for i in n.input}
    still = {i for n in kept for i in graphs.node_reads(n)}
    still |= {v.name for v in (*g.input, *g.output)}  # old IR: initializers declared as inputs
    if dead := gone - still:
        keep = [t for t in g.initializer if t.name not in dead]
        del g.initializer[:]
        g.initializer.extend(keep)


def source_weight(record: FocusRecord, value: np.ndarray) -> np.ndarray:
    """The weight in the source channel order from the permuted one."""
    return np.ascontiguousarray(value[:, list(record.source)])


def restore(model: onnx.ModelProto, records: Mapping[str, LayerExport]) -> None:
    """The simulated form: the conv's input gathered back into the Focus order, its weight
    read in the source order (a copy of the export, as the engine computes it)."""
    done = [r.focus for r in records.values() if r.focus is not None]
    if not done:
        return
    g = model.graph
    taken = used_names(model)
    for rec in done:
        b = GraphBuilder(f"{rec.node}_unfocus", taken)
        idx = b.const("channels", np.array(rec.source, np.int64))
        for n in g.node:
            if n.op_type == "DequantizeLinear" and n.output[0] == rec.weight:
                n.input[0] = rec.codes
        nodes = []
        for n in g.node:
            if n.name == rec.gather:
                continue
            if n.name == rec.node:
                back = b.node("Gather", [n.input[0], idx], axis=1)
                nodes.append(b.nodes[-1])
                n.input[0] = back
            nodes.append(n)
        del g.node[:]
        g.node.extend(nodes)
        g.initializer.extend(b.initializers)
