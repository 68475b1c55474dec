"""A stride-2 integer-kernel stem conv written as SpaceToDepth + a stride-1 conv (target ort-cpu).

A Conv reading an image of 1 to 4 channels runs badly in ONNX Runtime's QLinearConv:
its NHWC kernel builds im2col rows of ``C * kh * kw`` bytes (27 for a 3 x 3 RGB
stem), too short for the int8 GEMM to pay off. Measured on ONNX Runtime 1.31 CPU
(benchmarks/bench_export.py's cnn, a 3 -> 32 3 x 3 stride-2 stem on 128 x 128, per-node
profile over 300 runs, one thread): 126 us for the stem, against 97 us for the next conv,
which does 5.4 times the multiply-adds.

Moving each 2 x 2 block of pixels into channels (ONNX ``SpaceToDepth``, on the uint8
codes right after the input's QuantizeLinear) turns the stride-2 ``k x k`` conv into a
stride-1 ``ceil((k + p % 2) / 2)``-square conv on ``4 C`` channels whose extra taps are
zero: 66 us for the stem plus 18 us for the SpaceToDepth, the whole model 0.93 of
ONNX Runtime's own QDQ file (which runs the stem as is). It is the same sum: every
product of the original conv appears once, the padded positions are the zero point in
both (they add nothing), and the int32 accumulator, bias and requantization are
unchanged, so the outputs are bit-identical (checked by the fidelity check, which
compares the file's weight mapped back to the source layout and runs the simulated
form with the conv restored, see :func:`restore`).

The file stores the weight codes in the source layout; a Pad/Reshape/Transpose/Reshape
chain on the int8 codes, which ONNX Runtime folds into a constant when the session
starts (before its QDQ fusions), gives the DequantizeLinear the new layout.

Only where the activation is a graph input of static, even height and width (the
codes are then still NCHW: inside the network ONNX Runtime holds NHWC tensors, and a
SpaceToDepth there would cost two transposes), uint8 activation codes (SpaceToDepth on
uint8 is what was measured; ONNX Runtime 1.28 or later, see MIN_ORT), symmetric int8 weights (zero point 0, so the padded taps
are zero) and 1 to 4 input channels (what was measured).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from bitlens.core import targets
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.export.opsets import version_key
from bitlens.core.export.sizing import graph_bytes

if TYPE_CHECKING:
    from bitlens.core.engine import Engine
    from bitlens.core.export.records import LayerExport
    from bitlens.core.quantized import QuantizedModel

MAX_CHANNELS = 4  # input channels where it was measured faster (3: an RGB stem)
# The first ONNX Runtime whose CPU SpaceToDepth takes uint8: microsoft/onnxruntime#29154, merged
# after 1.27.0 was released. Older ones cannot load the rewritten file, so it is written only
# when the installed ONNX Runtime (which the fidelity check runs) has it, and the export
# records this as its minimum version.
MIN_ORT = "1.28.0"


def available() -> bool:
    """The installed ONNX Runtime runs SpaceToDepth on uint8 (see MIN_ORT)."""
    have = tuple(int(p) for p in re.findall(r"\d+", ort.__version__)[:3])
    return have >= version_key(MIN_ORT)


@dataclass(frozen=True)
class SpaceToDepthRecord:
    """How a stem conv was rewritten, so the fidelity check can undo it."""

    node: str  # the Conv node
    weight: str  # its weight: the DequantizeLinear output, now in the new layout
    codes: str  # the stored weight codes (source layout) the chain reads
    codes_in: str  # the activation codes the SpaceToDepth reads
    codes_out: str  # the SpaceToDepth output the activation's DequantizeLinear reads
    added: tuple[str, ...]  # names of the nodes added (SpaceToDepth and the weight chain)
    attributes: tuple[onnx.AttributeProto, ...]  # the Conv's source attributes
    shape: tuple[int, ...]  # the weight's source shape (O, C, kh, kw)
    offset: tuple[int, int]  # zero taps before the source kernel in the padded kernel


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _static_input(engine: Engine, tensor: str) -> tuple[int, int, int] | None:
    """(C, H, W) of a 4-D float graph input with static, even H and W."""
    vi = next((t for t in engine.info.inputs if t.name == tensor), None)
    if vi is None or len(vi.shape) != 4:
        return None
    c, h, w = vi.shape[1:]
    if not all(isinstance(d, int) and d > 0 for d in (c, h, w)) or h % 2 or w % 2:
        return None
    return int(c), int(h), int(w)


def _new_geometry(size: int, k: int, pad_lo: int, pad_hi: int) -> tuple[int, int, int, int] | None:
    """(new kernel, new pad before, new pad after, zero taps before) along one axis."""
    out = (size + pad_lo + pad_hi - k) // 2 + 1
    offset = pad_lo % 2
    k2 = (k + offset + 1) // 2
    lo2 = (pad_lo + 1) // 2
    hi2 = out - 1 + k2 - size // 2 - lo2
    return (k2, lo2, hi2, offset) if hi2 >= 0 else None


def rewrite(
    model: onnx.ModelProto,
    engine: Engine,
    qm: QuantizedModel,
    records: Mapping[str, LayerExport],
    taken: set[str],
    graph: int | None = None,
) -> tuple[dict[str, LayerExport], int | None]:
    """Rewrite every eligible stem conv of the finished export; returns the records with
    the rewrite and the bytes it added (to the layer's ``bytes_file``), and the graph's
    :func:`graph_bytes` as the rewrite leaves it (None where neither it nor the caller
    measured it). ``graph``: the graph's :func:`graph_bytes` now, where the caller measured
    it."""
    if qm.plan.target != targets.ORT_CPU or not available():
        return dict(records), graph
    out = dict(records)
    # the graph's size: the caller's or measured once, then after each rewrite
    before: int | None = graph
    for name, rec in records.items():
        if not rec.integer_kernel or rec.op_type != "Conv":
            continue
        if before is None:  # (a conv it leaves alone is left unedited: the size stays)
            before = graph_bytes(model)
        done = _rewrite_one(model, engine, qm, rec, taken)
        if done is not None:
            after = graph_bytes(model)
            out[name] = replace(
                rec, space_to_depth=done, bytes_file=rec.bytes_file + after - before,
                notes=(*rec.notes, "written as SpaceToDepth + a stride-1 conv (same sums, "
                       "a faster QLinearConv for a few input channels)"),
            )  # fmt: skip
            before = after
    return out, before


def _rewrite_one(
    model: onnx.ModelProto,
    engine: Engine,
    qm: QuantizedModel,
    rec: LayerExport,
    taken: set[str],
) -> SpaceToDepthRecord | None:
    g = model.graph
    layer = engine.info.layer(rec.name)
    if len(rec.quantizers) != 1 or len(rec.weights) != 1 or len(layer.weights) != 1:
        return None
    q, enc, w = rec.quantizers[0], rec.weights[0], layer.weights[0]
    qt = qm.weight(w.name).q
    if q.kind != "qdq" or not q.format.startswith("uint8") or enc.scheme != "qdq":
        return None
    zero = qt.zero_point is None or not np.any(np.asarray(qt.zero_point) != 0)
    if not zero or not qt.fmt.signed or len(w.shape) != 4:
        return None
    geom = _static_input(engine, q.activation)
    if geom is None or not 1 <= geom[0] <= MAX_CHANNELS:
        return None
    producer = {o: n for n in g.node for o in n.output}
    users: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            users[i] = users.get(i, 0) + 1
    conv = next((n for n in g.node if n.op_type == "Conv" and layer.outputs[0] in n.output), None)
    dq_x, dq_w = producer.get(q.output), producer.get(w.name)
    if conv is None or dq_x is None or dq_w is None or dq_w.op_type != "DequantizeLinear":
        return None
    if conv.input[0] != q.output or conv.input[1] != w.name:
        return None
    if users.get(q.output) != 1 or users.get(w.name) != 1 or users.get(dq_w.input[0]) != 1:
        return None
    a = _attrs(conv)
    o, c, kh, kw = w.shape
    if (
        list(a.get("strides", [1, 1])) != [2, 2]
        or list(a.get("dilations", [1, 1])) != [1, 1]
        or a.get("group", 1) != 1
        or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        or c != geom[0]
    ):
        return None
    pads = list(a.get("pads", [0, 0, 0, 0]))
    rows = _new_geometry(geom[1], kh, pads[0], pads[2])
    cols = _new_geometry(geom[2], kw, pads[1], pads[3])
    if rows is None or cols is None:
        return None
    (k2h, top, bottom, off_h), (k2w, left, right, off_w) = rows, cols
    b = GraphBuilder(f"{rec.name}_s2d", taken)
    codes = dq_w.input[0]
    pad = b.const("pads", np.array(
        [0, 0, off_h, off_w, 0, 0, 2 * k2h - kh - off_h, 2 * k2w - kw - off_w], np.int64))  # fmt: skip
    padded = b.node("Pad", [codes, pad])
    split = b.node(
        "Reshape", [padded, b.const("split", np.array([o, c, k2h, 2, k2w, 2], np.int64))]
    )
    moved = b.node("Transpose", [split], perm=[0, 3, 5, 1, 2, 4])
    folded = b.node("Reshape", [moved, b.const("shape", np.array([o, 4 * c, k2h, k2w], np.int64))])
    s2d = b.node("SpaceToDepth", [dq_x.input[0]], blocksize=2)
    original = tuple(onnx.AttributeProto.FromString(x.SerializeToString()) for x in conv.attribute)
    record = SpaceToDepthRecord(
        conv.name, w.name, codes, dq_x.input[0], s2d, tuple(n.name for n in b.nodes),
        original, tuple(w.shape), (off_h, off_w),
    )  # fmt: skip
    dq_w.input[0] = folded
    dq_x.input[0] = s2d
    keep = [x for x in conv.attribute if x.name not in ("pads", "strides", "kernel_shape")]
    del conv.attribute[:]
    conv.attribute.extend([*keep, helper.make_attribute("kernel_shape", [k2h, k2w]),
                           helper.make_attribute("pads", [top, left, bottom, right]),
                           helper.make_attribute("strides", [1, 1])])  # fmt: skip
    g.initializer.extend(b.initializers)
    nodes: list[onnx.NodeProto] = []
    chain = [n for n in b.nodes if n.op_type != "SpaceToDepth"]
    spd = [n for n in b.nodes if n.op_type == "SpaceToDepth"]
    for n in g.node:
        if n is dq_w:
            nodes.extend(chain)
        if n is dq_x:
            nodes.extend(spd)
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return record


def source_weight(record: SpaceToDepthRecord, value: np.ndarray) -> np.ndarray | None:
    """The weight in its source layout from the rewritten one; None when a tap the rewrite
    adds is not exactly zero (then the file does not compute the source conv)."""
    o, c, kh, kw = record.shape
    off_h, off_w = record.offset
    if value.ndim != 4 or value.shape[:2] != (o, 4 * c):
        return None
    k2h, k2w = value.shape[2:]
    full = value.reshape(o, 2, 2, c, k2h, k2w).transpose(0, 3, 4, 1, 5, 2)
    full = full.reshape(o, c, 2 * k2h, 2 * k2w)
    src = full[:, :, off_h : off_h + kh, off_w : off_w + kw]
    rest = full.copy()
    rest[:, :, off_h : off_h + kh, off_w : off_w + kw] = 0
    if np.any(rest != 0):
        return None
    return np.ascontiguousarray(src)


def restore(model: onnx.ModelProto, records: Mapping[str, LayerExport]) -> None:
    """Undo the rewrites in ``model`` (a copy of the export): the source conv reading the
    codes' DequantizeLinear directly, as the engine simulates it."""
    done = [r.space_to_depth for r in records.values() if r.space_to_depth is not None]
    if not done:
        return
    g = model.graph
    for rec in done:
        for n in g.node:
            if n.name == rec.node:
                del n.attribute[:]
                n.attribute.extend(rec.attributes)
            elif n.op_type == "DequantizeLinear" and n.input[0] == rec.codes_out:
                n.input[0] = rec.codes_in
            elif n.op_type == "DequantizeLinear" and n.output[0] == rec.weight:
                n.input[0] = rec.codes
    added = {name for rec in done for name in rec.added}
    keep = [n for n in g.node if n.name not in added]
    del g.node[:]
    g.node.extend(keep)
