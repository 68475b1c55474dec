"""A Relu whose only reader is an integer quantizer, folded into the quantizer's Clip.

Under the ort-cpu target every Conv -> Relu output is requantized where it is produced
(bitlens.core.targets), so the simulation graph runs Relu -> QuantizeLinear -> Clip ->
DequantizeLinear (the ``int-q`` quantizer, formats/families/int_activation.qdq_nodes). The
Relu cannot join the convolution in ONNX Runtime's NCHWc kernel (the convolution's output
is fetched: it is the layer's output), so it was a pass of its own: 44 Relus, 6.9 of a
W8A8 run's 80 ms of kernel time on the benchmark CRNN (ORT's profiler; docs/benchmarks.md,
"reevalwhole, session 14").

The fold is exact. QuantizeLinear with a positive scale is monotone non-decreasing in its
input (divide, round half to even, add the zero point, saturate: every step is), and maps
0 to its zero point ``zq``; so ``Q(Relu(x)) = Q(max(x, 0)) = max(Q(x), zq)``, and the
quantizer's ``Clip(q, '', top)`` after it becomes ``Clip(Q(x), zq, top)``: ONNX Runtime's
Clip is ``min(max(x, lo), hi)`` (onnxruntime/core/providers/cpu/math/clip.cc), the very
two steps. The engine's scales are positive (quantizers.py guards a zero range). Only the
Relu's output disappears, so the fold applies only where nothing else reads it: no other
node, not a model or layer output, not a tensor the engine measures. Only the engine's own
quantizers are folded (their zero point is a fed scalar parameter, cast to the codes' type):
a model's own QuantizeLinear may be per-axis, where a zero point cannot be Clip's bound.
"""

from __future__ import annotations

from collections.abc import Collection

import onnx

from bitlens.core.engine.graphs import node_reads
from bitlens.core.model.repeated import remove_where


def fold_relus(graph: onnx.GraphProto, keep: Collection[str]) -> list[str]:
    """Fold each main-graph Relu read only by an ``int-q`` quantizer into it (in place);
    the names of the Relu outputs that are gone. ``keep``: tensors that must stay (the
    caller's fetched names); a removed tensor is also dropped from ``graph.output``."""
    relus = [
        n
        for n in graph.node
        if n.op_type == "Relu" and n.domain in ("", "ai.onnx") and n.output[0] not in keep
    ]
    if not relus or not any(n.op_type == "QuantizeLinear" for n in graph.node):
        # Nothing to fold (PP-OCRv4 rec has no Relu; a float graph has no quantizer): the
        # index of readers below cost 10-20 ms of each of PP-OCRv4 rec's simulation graphs,
        # built in the open's critical path (docs/benchmarks.md, "openslack, session 16").
        return []
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node_reads(node):
            readers.setdefault(name, []).append(node)
    fed = {v.name for v in graph.input}
    producer = {o: n for n in graph.node for o in n.output}
    gone: set[str] = set()
    drop: set[int] = set()
    for node in relus:
        y = node.output[0]
        quant = _single(readers.get(y))
        if quant is None or quant.op_type != "QuantizeLinear" or len(quant.input) < 3:
            continue
        if quant.input[0] != y or quant.domain not in ("", "ai.onnx"):
            continue
        zq = producer.get(quant.input[2])
        if zq is None or zq.op_type != "Cast" or zq.input[0] not in fed:
            continue
        clip = _single(readers.get(quant.output[0]))
        if clip is None or clip.op_type != "Clip" or len(clip.input) != 3 or clip.input[1]:
            continue
        quant.input[0] = node.input[0]
        clip.input[1] = quant.input[2]  # the zero point, in the codes' type
        gone.add(y)
        drop.add(id(node))
    if not gone:
        return []
    remove_where(graph.node, lambda n: id(n) in drop)
    remove_where(graph.output, lambda v: v.name in gone)
    return sorted(gone)


def _single(nodes: list[onnx.NodeProto] | None) -> onnx.NodeProto | None:
    return nodes[0] if nodes is not None and len(nodes) == 1 else None
