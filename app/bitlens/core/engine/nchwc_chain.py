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
An element-wise operator of such tensors (two of one size, traced through size-keeping
convs so that no broadcasting hides in it) and scalar constants also runs on the blocked
tensors: Relu, a residual Add, Paddle's hard-swish (Add 3 -> Clip 0 6 -> Div 6 -> Mul);
a ReorderInput of a tensor that has a blocked twin reads the twin; an NCHW tensor still
read (a graph output, the pooling after the last conv) is its twin reordered; then the
reorders and element-wise nodes that nothing reads any more go, and a Relu that alone
reads a blocked conv's output becomes the conv's ``activation``.

The values are the same: reordering is a permutation, the element-wise operators do the
same operations on the same numbers, and MLAS applies a fused Relu as max(x, 0) to what
the conv wrote. The padded channels of a twin need not hold zeros (after Add 3 they hold
3): a conv reading them multiplies them by its filter's zero padding and adds that zero
to its sums, so any finite value leaves the sums as they are (their value is followed,
and an operator that would make it Inf or NaN, such as a division by a twin, keeps its
NCHW form). A sum that is exactly -0.0 may come out +0.0. (An Inf or NaN reaching a conv
makes its padded outputs NaN, 0 x Inf: ONNX Runtime's own blocked chains in the float
file behave the same.) A tensor that is a graph output is still computed.

Only the sweep's suffix sessions are built so (``make_session(..., blocked_chains=True)``):
they fetch one output, so nearly every reorder goes. In every engine session the
benchmark CRNN's engine peak RSS rose from 198 to 258 MiB (cause not found).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.engine.graphs import node_reads
from bitlens.core.engine.nchwc import DOMAIN, SUFFIX

ENABLED = True  # False: the graph as nchwc.rewrite wrote it (tests compare both)
# element-wise operators run on blocked tensors as they are: of one or two blocked tensors of
# one size and scalar constants (Paddle's hard-swish is Add 3 -> Clip 0 6 -> Div 6 -> Mul)
_UNARY = {"Relu", "Sigmoid", "HardSigmoid", "HardSwish"}
_BINARY = {"Add", "Sub", "Mul", "Div"}
_ELEMENTWISE = _UNARY | _BINARY | {"Clip"}
_PURE = {(DOMAIN, "ReorderOutput"), (DOMAIN, "ReorderInput")} | {("", o) for o in _ELEMENTWISE}


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
    # the value in a twin's padded channels: 0 after a conv or a reorder, then what the
    # element-wise operators make of it (Add 3: 3); a conv reading it multiplies it by the
    # filter's zero padding, so any finite value leaves the conv's sums as they are
    pad: dict[str, float] = {}
    scalars = _scalars(g)

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
                twin[ins[0]], pad[ins[0]] = out, 0.0
        elif op == (DOMAIN, "Conv") and _keeps_size(node):
            same[out] = key(source.get(ins[0], ins[0]))
        elif op == (DOMAIN, "ReorderOutput") and not _channels_last(node):
            twin[out], pad[out] = ins[0], 0.0
            channels[out] = _attr(node, "channels", 0)
            same[out] = key(ins[0])
        elif not node.domain and node.op_type in _ELEMENTWISE and len(node.output) == 1:
            tw = [n for n in ins if n in twin]
            # Every twin has 4 channels or more (nchwc.rewrite's convs: multiples of 4),
            # so two twins cannot broadcast over channels: of one key, one shape; a scalar
            # constant broadcasts over every element, padding included.
            if (
                not tw or len({key(n) for n in tw}) > 1 or (node.op_type == "Clip" and ins[0] not in twin)
                or not all(n in twin or n in scalars or (n == "" and node.op_type == "Clip") for n in ins)
            ):  # fmt: skip
                continue
            padded = _padding_after(node, [pad[n] if n in twin else scalars.get(n) for n in ins])
            if padded is None:
                continue
            added.append((k, _mirror(node, [twin.get(n, n) for n in ins])))
            twin[out], same[out], pad[out] = added[-1][1].output[0], key(tw[0]), padded
            known = [channels[n] for n in tw if n in channels]
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
    """``node`` (its attributes too) run on the blocked twins ``inputs``."""
    out = onnx.NodeProto()
    out.CopyFrom(node)
    del out.input[:]
    out.input.extend(inputs)
    out.output[0] = f"{node.output[0]}{SUFFIX}_blk"
    out.name = f"{node.name or node.output[0]}{SUFFIX}_blk"
    return out


def _scalars(g: onnx.GraphProto) -> dict[str, float]:
    """Float32 constants of one element (initializers, Constant nodes), by name; not an
    initializer also listed as an input (a feed may replace it: a divisor by 0)."""
    found: dict[str, float] = {}
    fed = {v.name for v in g.input}
    tensors = [(t.name, t) for t in g.initializer if t.name not in fed]
    for node in g.node:
        if node.op_type == "Constant" and not node.domain and len(node.attribute) == 1:
            a = node.attribute[0]
            if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                tensors.append((node.output[0], a.t))
    for name, t in tensors:
        if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) <= 4 and int(np.prod(t.dims)) == 1:
            found[name] = float(numpy_helper.to_array(t).reshape(-1)[0])
    return found


def _padding_after(node: onnx.NodeProto, values: list[float | None]) -> float | None:
    """What ``node`` makes of the padding (``values``: per input, a twin's padding or a
    scalar constant; None for an absent Clip bound), in float32; None when not finite
    (e.g. a division by a twin's zero padding)."""
    v = [None if x is None else np.float32(x) for x in values]
    op = node.op_type
    with np.errstate(all="ignore"):
        if op in _BINARY:
            a, b = v[0], v[1]
            out = {"Add": a + b, "Sub": a - b, "Mul": a * b, "Div": a / b}[op]
        elif op == "Clip":
            out = v[0]
            if len(v) > 1 and v[1] is not None:
                out = max(out, v[1])
            if len(v) > 2 and v[2] is not None:
                out = min(out, v[2])
        elif op == "Relu":
            out = max(v[0], np.float32(0))
        elif op == "Sigmoid":
            out = 1 / (1 + np.exp(-v[0]))
        else:  # HardSigmoid, HardSwish: x times it
            alpha, beta = (
                (_attr(node, "alpha", 0.2), _attr(node, "beta", 0.5))
                if op == "HardSigmoid"
                else (1 / 6, 0.5)
            )
            out = np.clip(alpha * v[0] + beta, 0, 1) * (1 if op == "HardSigmoid" else v[0])
    return float(out) if np.isfinite(out) else None


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
