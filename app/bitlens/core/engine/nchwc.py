"""The engine's convolutions on ONNX Runtime's blocked-channel (NCHWc) CPU kernels, with
their filters still fed at run time.

ONNX Runtime's NchwcTransformer (onnxruntime/core/optimizer/nchwc_transformer.cc in
github.com/microsoft/onnxruntime) moves a float Conv onto MLAS's NCHWc kernels only when
its filter is a constant: it reorders the filter once, when the session is built. The
engine feeds every weight as a graph input (a new format is a numpy quantization and a
run, never a new session), so its convolutions ran on the plain NCHW path: on the
benchmark CRNN 62.7 ms of Conv a run against 36.1 ms in the float file (docs/benchmarks.md,
"Re-evaluation's floor"). The kernels themselves are ordinary operators of the
``com.microsoft.nchwc`` domain (onnxruntime/contrib_ops/cpu/nchwc_ops.cc): ``Conv`` reads
its filter from input 1 at run time, in MLAS's blocked layout. So each fed-filter Conv is
rewritten here to ReorderInput -> nchwc Conv -> ReorderOutput, and the session's runs feed
the filter reordered in numpy (:func:`reorder_filter`, cached per fed array).

The block size and the layouts are not assumed: :func:`block_size` lets ONNX Runtime
optimize a three-conv probe with constant filters and checks that this module's numpy
reorders give the very filters ONNX Runtime wrote (MlasReorderFilterOIHWBo for a conv
reading fewer channels than a block, in NCHW, and for a depthwise conv, one group per
padded channel; MlasReorderFilterOIHWBiBo otherwise, onnxruntime/core/mlas/lib/
reorder.cpp). Anything else (no NCHWc kernels on this CPU or build, another layout, a
grouped conv other than depthwise, a filter of unknown shape, a non-CPU provider)
keeps the plain Conv: the rewrite is a speed-up, never a change of what is computed
beyond float reassociation (the same kernels the float file runs on).
"""

from __future__ import annotations

import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from bitlens.core.engine.graphs import node_reads
from bitlens.core.engine.session_run import run_session
from bitlens.core.model.proto_copy import copy_but

DOMAIN = "com.microsoft.nchwc"
ENABLED = True  # False: every Conv stays the plain ONNX Conv (tests compare both)
SUFFIX = "__nchwc"


def _padded(n: int, block: int) -> int:
    return -(-n // block) * block


def reorder_filter(w: np.ndarray, block: int, layout: str) -> np.ndarray:
    """``w`` ([O, I, kH, kW]) in MLAS's blocked layout, output channels zero-padded to a
    multiple of ``block``: ``"bo"`` ([O/B][I][kH][kW][Bo], for an NCHW input of fewer than
    ``block`` channels) or ``"bibo"`` ([O/B][I/B][kH][kW][Bi][Bo], input channels padded
    too)."""
    o, i, kh, kw = w.shape
    op = _padded(o, block)
    ip = i if layout == "bo" else _padded(i, block)
    full = np.zeros((op, ip, kh, kw), np.float32)
    full[:o, :i] = w
    if layout == "bo":
        blocked = full.reshape(op // block, block, ip, kh, kw).transpose(0, 2, 3, 4, 1)
    else:
        blocked = full.reshape(op // block, block, ip // block, block, kh, kw)
        blocked = blocked.transpose(0, 2, 4, 5, 3, 1)
    return np.ascontiguousarray(blocked).reshape(op, ip, kh, kw)


def pad_bias(b: np.ndarray, block: int) -> np.ndarray:
    out = np.zeros(_padded(b.shape[0], block), np.float32)
    out[: b.shape[0]] = b
    return out


@cache
def block_size() -> int | None:
    """MLAS's NCHWc block size on this machine (MlasNchwcGetBlockSize: 8 with AVX2, 16 with
    AVX-512), read from the filters ONNX Runtime writes for a probe, or None when ONNX
    Runtime does not move the probe's convs to NCHWc or writes filters other than
    :func:`reorder_filter`'s (then no conv is rewritten)."""
    try:
        return _probe()
    except Exception:  # any failure means: keep the plain convs
        return None


def _probe() -> int | None:
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((48, 3, 3, 3)).astype(np.float32)  # 3 channels in: "bo"
    w1 = rng.standard_normal((4, 48, 3, 3)).astype(np.float32)  # 48 in, 4 out: "bibo"
    b1 = rng.standard_normal(4).astype(np.float32)
    w2 = rng.standard_normal((48, 1, 3, 3)).astype(np.float32)  # depthwise: "bo"
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h", "w1", "b1"], ["y"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h", "w2"], ["z"], pads=[1, 1, 1, 1], group=48),
    ]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [
            helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8]),
            helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 48, 8, 8]),
        ],
        [
            numpy_helper.from_array(a, n)
            for a, n in ((w0, "w0"), (w1, "w1"), (b1, "b1"), (w2, "w2"))
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory(prefix="bitlens-nchwc-") as tmp:
        so.optimized_model_filepath = str(Path(tmp) / "probe.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(so.optimized_model_filepath)
    inits = {t.name: numpy_helper.to_array(t) for t in opt.graph.initializer}
    convs: dict[str, onnx.NodeProto] = {}
    for n in opt.graph.node:
        if n.op_type == "Conv" and n.domain == DOMAIN and n.input[1] in inits:
            depthwise = _attrs(n).get("group", 1) > 1
            convs["z" if depthwise else "h" if inits[n.input[1]].shape[1] == 3 else "y"] = n
    if len(convs) != 3:
        return None
    block = inits[convs["y"].input[1]].shape[0]  # 4 output channels padded to one block
    if block < 4 or block & (block - 1):
        return None
    for out, w, layout in (("h", w0, "bo"), ("y", w1, "bibo"), ("z", w2, "bo")):
        if not np.array_equal(inits[convs[out].input[1]], reorder_filter(w, block, layout)):
            return None
    if _attrs(convs["z"]).get("group") != _padded(48, block):
        return None
    bias = inits.get(convs["y"].input[2]) if len(convs["y"].input) > 2 else None
    if bias is None or not np.array_equal(bias, pad_bias(b1, block)):
        return None
    return int(block)


@dataclass(frozen=True)
class Fed:
    """A graph input the rewritten graph reads in place of a fed one: ``source``'s value
    reordered (``layout`` "bo" or "bibo") or zero-padded (``layout`` "bias")."""

    source: str
    layout: str


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _static_shape(v: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    t = v.type.tensor_type
    if t.elem_type != onnx.TensorProto.FLOAT or not t.HasField("shape"):
        return None
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return dims if all(d > 0 for d in dims) else None


def rewrite(model: onnx.ModelProto, block: int) -> tuple[onnx.ModelProto, dict[str, Fed]] | None:
    """A copy of ``model`` whose main-graph Conv nodes with a fed float filter of static
    shape (2-D, group 1 or depthwise) run on the NCHWc kernels, and the new inputs; None when no conv
    qualifies. The input a conv read its filter (and a bias of a partial last block) from
    stays an input only if another node reads it."""
    g = model.graph
    inputs = {v.name: v for v in g.input}
    constants = {t.name for t in g.initializer}
    new_inputs: dict[str, Fed] = {}
    added: list[onnx.ValueInfoProto] = []
    nodes: list[onnx.NodeProto] = []
    changed = False
    for node in g.node:
        done = _rewrite_conv(node, block, inputs, constants, new_inputs, added)
        if done is None:
            nodes.append(node)
        else:
            nodes.extend(done)
            changed = True
    if not changed:
        return None
    out = onnx.ModelProto()  # the graph's nodes replaced, not copied and then deleted
    copy_but(model, out, ("graph",))
    copy_but(g, out.graph, ("node",))
    og = out.graph
    og.node.extend(nodes)
    # what every node reads, subgraphs' outer names included (a weight an If body reads too)
    read = {n for node in nodes for n in node_reads(node)} | {v.name for v in og.output}
    for i in reversed([i for i, v in enumerate(og.input) if v.name not in read]):
        del og.input[i]
    og.input.extend(added)
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out, new_inputs


def _rewrite_conv(
    node: onnx.NodeProto,
    block: int,
    inputs: Mapping[str, onnx.ValueInfoProto],
    constants: set[str],
    new_inputs: dict[str, Fed],
    added: list[onnx.ValueInfoProto],
) -> list[onnx.NodeProto] | None:
    """The NCHWc nodes replacing ``node``, or None to keep it (see :func:`rewrite`)."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
        return None
    attrs = _attrs(node)
    w = inputs.get(node.input[1])
    shape = None if w is None or w.name in constants else _static_shape(w)
    if shape is None or len(shape) != 4:
        return None
    o, i, kh, kw = shape
    group = attrs.get("group", 1)
    depthwise = group > 1 and i == 1 and o == group  # one filter per channel
    if (group != 1 and not depthwise) or o % 4:
        return None
    if list(attrs.get("kernel_shape", [kh, kw])) != [kh, kw]:
        return None
    # MLAS reads an NCHW input of fewer channels than a block directly; a wider one is
    # reordered (MlasReorderInputNchw handles channel counts that are multiples of 4). A
    # depthwise conv reads a reordered input, its filters in the "bo" layout, and one
    # group per padded channel (what NchwcTransformer writes for it).
    layout = "bo" if i < block else "bibo"
    if layout == "bibo" and i % 4:
        return None
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if bias is not None and o % block and (bias not in inputs or bias in constants):
        return None  # a constant bias of a partial block: MLAS reads a padded one
    name = node.name or node.output[0]
    out: list[onnx.NodeProto] = []
    x = node.input[0]
    if layout == "bibo" or depthwise:
        x = f"{node.output[0]}{SUFFIX}_in"
        out.append(
            helper.make_node(
                "ReorderInput", [node.input[0]], [x], f"{name}{SUFFIX}_in", domain=DOMAIN
            )
        )
    fed_w = f"{w.name}{SUFFIX}"
    if fed_w not in new_inputs:
        new_inputs[fed_w] = Fed(w.name, layout)
        ip = i if layout == "bo" else _padded(i, block)
        added.append(
            helper.make_tensor_value_info(
                fed_w, onnx.TensorProto.FLOAT, [_padded(o, block), ip, kh, kw]
            )
        )
    conv_inputs = [x, fed_w]
    if bias is not None:
        if o % block:
            fed_b = f"{bias}{SUFFIX}"
            if fed_b not in new_inputs:
                new_inputs[fed_b] = Fed(bias, "bias")
                added.append(
                    helper.make_tensor_value_info(
                        fed_b, onnx.TensorProto.FLOAT, [_padded(o, block)]
                    )
                )
            bias = fed_b
        conv_inputs.append(bias)
    keep = {k: v for k, v in attrs.items() if k in ("auto_pad", "dilations", "pads", "strides")}
    y = f"{node.output[0]}{SUFFIX}"
    out.append(
        helper.make_node(
            "Conv",
            conv_inputs,
            [y],
            f"{name}{SUFFIX}",
            domain=DOMAIN,
            kernel_shape=[kh, kw],
            group=_padded(o, block) if depthwise else 1,
            **keep,
        )
    )
    out.append(
        helper.make_node(
            "ReorderOutput", [y], [node.output[0]], f"{name}{SUFFIX}_out", domain=DOMAIN, channels=o
        )
    )
    return out


class _Arg:
    """What the engine reads of a session input: its name (see chain.py)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Reordered:
    """The reordered values of fed arrays, one per input name: the latest source array
    (held by weak reference, compared by identity) and its reordered copy, dropped when the
    source array goes. The engine feeds the same array objects run after run (the float
    weights, the cached quantized ones) and never writes into one it fed (its caches hand
    the same arrays out again), so each is reordered once: the benchmark CRNN's filters take
    about 6 ms of numpy, against 20-30 ms of Conv saved per run. At most one
    reordered copy of each fed filter is held, for as long as its source lives."""

    def __init__(self) -> None:
        # re-entrant: a source may die (its callback runs) on a thread holding the lock
        self._lock = threading.RLock()
        self._kept: dict[str, tuple[weakref.ref, np.ndarray]] = {}

    def get(self, name: str, fed: Fed, value: np.ndarray, block: int) -> np.ndarray:
        with self._lock:
            kept = self._kept.get(name)
        if kept is not None and kept[0]() is value:
            return kept[1]
        v = np.asarray(value, np.float32)
        out = pad_bias(v, block) if fed.layout == "bias" else reorder_filter(v, block, fed.layout)
        try:
            ref = weakref.ref(value, lambda r, n=name: self._drop(n, r))
        except TypeError:  # not weak-referenceable: reordered again next time
            return out
        with self._lock:
            self._kept[name] = (ref, out)
        return out

    def _drop(self, name: str, ref: weakref.ref) -> None:
        with self._lock:
            kept = self._kept.get(name)
            if kept is not None and kept[0] is ref:
                del self._kept[name]

    def __len__(self) -> int:
        return len(self._kept)


REORDERED = Reordered()  # shared by every session: the same weights feed many of them


class NchwcSession:
    """A session over :func:`rewrite`'s graph that takes the original graph's feeds:
    ``get_inputs`` names the original inputs, ``run`` reorders the fed filters."""

    def __init__(
        self,
        session: ort.InferenceSession,
        inputs: Sequence[str],
        fed: Mapping[str, Fed],
        block: int,
    ) -> None:
        self._session = session
        self._inputs = [_Arg(n) for n in inputs]
        self._direct = {i.name for i in session.get_inputs()} - set(fed)
        self._fed = dict(fed)
        self._block = block

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def __getattr__(self, name: str):  # get_outputs, get_providers...: the session's
        return getattr(self._session, name)

    def feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: v for k, v in feeds.items() if k in self._direct}
        for name, fed in self._fed.items():
            out[name] = REORDERED.get(name, fed, feeds[fed.source], self._block)
        return out

    def run(self, fetch, feeds: Mapping[str, np.ndarray], run_options=None) -> list[np.ndarray]:
        return run_session(self._session, fetch, self.feeds(feeds), run_options)


def nchwc_graph(model: onnx.ModelProto, providers: Sequence[str]):
    """(graph to build, the wrapper's arguments) for a session of ``model`` on
    ``providers``: :func:`rewrite`'s graph where it applies (the CPU provider alone, NCHWc
    kernels found by :func:`block_size`), else ``model`` and None."""
    if not ENABLED or list(providers) != ["CPUExecutionProvider"]:
        return model, None
    if not any(n.op_type == "Conv" for n in model.graph.node):
        return model, None
    block = block_size()
    if block is None:
        return model, None
    done = rewrite(model, block)
    if done is None:
        return model, None
    graph, fed = done
    return graph, ([v.name for v in model.graph.input], fed, block)
