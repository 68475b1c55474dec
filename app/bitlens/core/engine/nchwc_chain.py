"""Convolutions chained in ONNX Runtime's blocked-channel (NCHWc) layout, without the
round trip through NCHW between them.

:mod:`.nchwc` rewrites each fed-filter Conv to ReorderInput -> nchwc Conv ->
ReorderOutput, so a Conv -> Relu -> Conv chain ran ReorderOutput, the Relu and a
ReorderInput on every tensor between two convolutions: 8.6% of the kernel time of a
sweep of the benchmark CRNN was the reorders, 4% the Relus (ORT's profiler over every
suffix session; docs/benchmarks.md, "sweepwall, session 15"). ONNX Runtime's own
NchwcTransformer (onnxruntime/core/optimizer/nchwc_transformer.cc in
github.com/microsoft/onnxruntime) keeps such tensors blocked, but only around the convs
it rewrote itself (constant filters), never around the engine's.

Here every tensor that exists in both layouts is tracked: a conv's blocked output and
its ReorderOutput, an outside NCHW tensor (a suffix part's input) and its ReorderInput.
A Relu of such a tensor, and an Add of two of one size (traced through size-keeping
convs, so that no broadcasting can hide in it), is also run on the blocked tensors; a
ReorderInput of a tensor that has a blocked twin reads the twin; an NCHW tensor still
read (a graph output, the pooling after the last conv) is its twin reordered; then a
ReorderOutput, ReorderInput, Relu or Add that nothing reads any more goes, and a Relu
that alone reads a blocked conv's output becomes the conv's ``activation``.

The values are the same bit for bit: reordering is a permutation with zero padding, a
blocked conv's padded channels are zero (its filter and bias are zero-padded), Relu and
Add are element-wise (the same operations on the same pairs of numbers) and keep zero
padding zero, and MLAS applies a fused Relu as max(x, 0) to what the conv wrote. A
tensor that is a graph output (a layer output the engine measures) is still computed.
(An Inf or NaN reaching a conv makes its padded channels NaN, 0 x Inf: ONNX Runtime's
own blocked chains in the float file behave the same.)

Only the sweep's suffix sessions are built so (``make_session(..., blocked_chains=True)``):
they fetch one output, so nearly every reorder goes. In every engine session the
benchmark CRNN's engine peak RSS rose from 198 to 258 MiB (cause not found).
"""

from __future__ import annotations

import onnx
from onnx import helper

from bitlens.core.engine.graphs import node_reads
from bitlens.core.engine.nchwc import DOMAIN, SUFFIX

ENABLED = True  # False: the graph as nchwc.rewrite wrote it (tests compare both)
_PURE = {(DOMAIN, "ReorderOutput"), (DOMAIN, "ReorderInput"), ("", "Relu"), ("", "Add")}


def chain_blocked(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` (nchwc.rewrite's graph) with its blocked tensors passed on between convs
    (module docstring); the same model object, changed in place."""
    if not ENABLED:
        return model
    g = model.graph
    twin: dict[str, str] = {}  # NCHW tensor -> the same values in the blocked layout
    channels: dict[str, int] = {}  # NCHW tensor with a twin -> its channels, where known
    # tensor -> a tensor of the same batch and spatial size (itself unless a chain of
    # size-keeping convs, Relus, Adds and reorders leads back to another)
    same: dict[str, str] = {}
    source: dict[str, str] = {}  # a ReorderInput's output -> the NCHW tensor it reads
    renamed: dict[str, str] = {}  # a ReorderInput's output -> the twin it equals
    added: list[tuple[int, onnx.NodeProto]] = []

    def key(name: str) -> str:
        return same.get(name, name)

    for k, node in enumerate(g.node):
        op = (node.domain, node.op_type)
        ins, out = node.input, node.output[0] if node.output else ""
        if op == (DOMAIN, "ReorderInput") and not _channels_last(node):
            source[out] = ins[0]
            same[out] = key(ins[0])
            if ins[0] in twin:
                renamed[out] = twin[ins[0]]
            else:  # an NCHW tensor from outside (a part's input): its reorder is its twin
                twin[ins[0]] = out
        elif op == (DOMAIN, "Conv") and _keeps_size(node):
            same[out] = key(source.get(ins[0], ins[0]))
        elif op == (DOMAIN, "ReorderOutput") and not _channels_last(node):
            twin[out] = ins[0]
            channels[out] = _attr(node, "channels", 0)
            same[out] = key(ins[0])
        elif (op == ("", "Relu") and ins[0] in twin) or (
            # Every twin has 4 channels or more (nchwc.rewrite's convs: multiples of 4),
            # so an Add of two cannot broadcast over channels: of one key, one shape.
            op == ("", "Add") and len(ins) == 2 and all(n in twin for n in ins)
            and key(ins[0]) == key(ins[1])
        ):  # fmt: skip
            added.append((k, _mirror(node, [twin[n] for n in ins])))
            twin[out], same[out] = added[-1][1].output[0], key(ins[0])
            known = [channels[n] for n in ins if n in channels]
            if known:
                channels[out] = known[0]
    if not renamed and not added:
        return model
    for node in g.node:
        for j, name in enumerate(node.input):
            if name in renamed:
                node.input[j] = renamed[name]
    nodes = list(g.node)
    for k, node in reversed(added):
        # The mirrored node's NCHW output, where still read (a model output, a pooling
        # after the last conv), is its twin reordered: the NCHW Relus and Adds before it
        # then go too (a residual chain read at its end kept every one of them). Of
        # unknown channels (only twins of a part's inputs), the node itself stays.
        out = nodes[k].output[0]
        if out in channels:
            nodes[k] = helper.make_node(
                "ReorderOutput", [node.output[0]], [out], f"{nodes[k].name or out}{SUFFIX}_out",
                domain=DOMAIN, channels=channels[out],
            )  # fmt: skip
        nodes.insert(k, node)
    outputs = {v.name for v in g.output}
    kept = _fuse_relu(_live(nodes, outputs), outputs)
    del g.node[:]
    g.node.extend(kept)
    return model


def _fuse_relu(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """A Relu that alone reads a blocked conv's output becomes the conv's ``activation``
    (MLAS applies it to each output block as the kernel writes it: max(x, 0), the same
    values as the Relu's own pass over the tensor, which is saved)."""
    readers: dict[str, int] = {}
    for node in nodes:
        for name in node_reads(node):
            readers[name] = readers.get(name, 0) + 1
    producer = {o: node for node in nodes for o in node.output}
    kept = []
    for node in nodes:
        conv = producer.get(node.input[0]) if node.op_type == "Relu" and not node.domain else None
        if (
            conv is not None and (conv.domain, conv.op_type) == (DOMAIN, "Conv")
            and readers[node.input[0]] == 1 and node.input[0] not in outputs
            and _attr(conv, "activation", None) is None
        ):  # fmt: skip
            conv.output[0] = node.output[0]
            conv.attribute.append(helper.make_attribute("activation", "Relu"))
            continue
        kept.append(node)
    return kept


def _mirror(node: onnx.NodeProto, inputs: list[str]) -> onnx.NodeProto:
    """``node`` run on the blocked twins ``inputs``."""
    out = f"{node.output[0]}{SUFFIX}_blk"
    return helper.make_node(
        node.op_type, inputs, [out], f"{node.name or node.output[0]}{SUFFIX}_blk"
    )


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _channels_last(node: onnx.NodeProto) -> bool:
    return bool(_attr(node, "channels_last", 0))


def _keeps_size(node: onnx.NodeProto) -> bool:
    """A conv whose output has its input's batch and spatial size: strides and dilations
    1, explicit pads of kernel - 1 on each axis."""
    kernel = list(_attr(node, "kernel_shape", []))
    pads = list(_attr(node, "pads", [0] * 2 * len(kernel)))
    return (
        bool(kernel)
        and _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        and all(s == 1 for s in _attr(node, "strides", [1] * len(kernel)))
        and all(d == 1 for d in _attr(node, "dilations", [1] * len(kernel)))
        and len(pads) == 2 * len(kernel)
        and all(pads[a] + pads[a + len(kernel)] == k - 1 for a, k in enumerate(kernel))
    )


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` less the reorders, Relus and Adds whose outputs nothing reads."""
    read = set(outputs)
    keep: list[onnx.NodeProto] = []
    for node in reversed(nodes):
        if (node.domain, node.op_type) in _PURE and not read.intersection(node.output):
            continue
        keep.append(node)
        read.update(node_reads(node))
    keep.reverse()
    return keep
