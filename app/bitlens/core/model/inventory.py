"""Build the neutral :class:`ModelInfo` from an ONNX graph: layers, weights, edges.

A *layer* is a node with a constant float weight that a quantizer can
store at lower precision. The rules per op say which input is the weight
and which of its axes are the output channels (per-channel formats) and
the reduction (block formats):

=============  ==========================  =======  =========
op             weight                      channel  block
=============  ==========================  =======  =========
Conv           W [O, I/g, k...]            0        1
ConvTranspose  W [I, O/g, k...]            1        0
Gemm           B [K, N] / [N, K] (transB)  1 / 0    0 / 1
MatMul         B [..., K, N]               last     ndim - 2
MatMul         A [M, K] (constant first)   0        1
Gather         data [V, D] (embedding)     0        1
LSTM/GRU/RNN   W, R [D, G*H, I|H]          1        2
=============  ==========================  =======  =========
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from bitlens.core.errors import ModelLoadError
from bitlens.core.model.constants import ConstantIndex, subgraphs
from bitlens.core.model.types import (
    Dim,
    Edge,
    Layer,
    ModelInfo,
    NodeInfo,
    TensorInfo,
    WeightInfo,
)

FLOAT_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.BFLOAT16,
}
RECURRENT = {"LSTM", "GRU", "RNN"}


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for _, sub in subgraphs(node):
            yield from _all_nodes(sub)


def name_nodes(graph: onnx.GraphProto) -> None:
    """Give every node (at any depth) a unique name: ``<OpType>_<n>`` where missing or repeated.

    Works on Bitlens's private copy of the model; the first node keeps a repeated name.
    """
    taken = Counter(n.name for n in _all_nodes(graph) if n.name)
    used: set[str] = set()
    counter = 0
    for node in _all_nodes(graph):
        if node.name and node.name not in used:
            used.add(node.name)
            continue
        while f"{node.op_type}_{counter}" in taken or f"{node.op_type}_{counter}" in used:
            counter += 1
        node.name = f"{node.op_type}_{counter}"
        used.add(node.name)
        counter += 1


def sort_topologically(graph: onnx.GraphProto, where: str) -> None:
    """Reorder the main graph's nodes if the file does not list them in topological order."""
    produced = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    sorted_already = all(
        produced.get(i, -1) < k for k, n in enumerate(graph.node) for i in n.input if i in produced
    )
    if sorted_already:
        return
    deps = [
        {produced[i] for i in n.input if i in produced and produced[i] != k}
        for k, n in enumerate(graph.node)
    ]
    order: list[int] = []
    done: set[int] = set()
    remaining = list(range(len(graph.node)))
    while remaining:
        ready = [k for k in remaining if deps[k] <= done]
        if not ready:
            raise ModelLoadError(f"{where}: the graph has a cycle; it is not a valid ONNX model")
        order.extend(ready)
        done.update(ready)
        remaining = [k for k in remaining if k not in done]
    nodes = [graph.node[k] for k in order]
    copies = []
    for n in nodes:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        copies.append(c)
    del graph.node[:]
    graph.node.extend(copies)


def _tensor_info(v: onnx.ValueInfoProto) -> TensorInfo:
    tt = v.type.tensor_type
    dtype = "float32"
    if tt.elem_type:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
    shape: tuple[Dim, ...] | None = None
    if tt.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
        )
    return TensorInfo(v.name, shape, dtype)


class _Builder:
    def __init__(self, model: onnx.ModelProto, path: Path | None):
        self.model = model
        self.path = path
        self.constants = ConstantIndex(model.graph)
        self.nodes: list[NodeInfo] = []
        self.layers: list[Layer] = []
        self.edges: list[Edge] = []
        g = model.graph
        self.value_info = {v.name: _tensor_info(v) for v in [*g.value_info, *g.input, *g.output]}

    # -- constants -------------------------------------------------------------------
    def _weight(self, name: str, channel_axis: int, block_axis: int) -> WeightInfo | None:
        entry = self.constants.get(name)
        if entry is None or entry.tensor.data_type not in FLOAT_TYPES:
            return None
        shape = tuple(int(d) for d in entry.tensor.dims)
        if not shape:
            return None
        nd = len(shape)
        ch = channel_axis % nd
        blk = block_axis % nd
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(entry.tensor.data_type)).name
        return WeightInfo(name, shape, dtype, entry.storage, entry.graph_path, ch, blk)

    def _const_float(self, name: str) -> bool:
        e = self.constants.get(name)
        return e is not None and e.tensor.data_type in FLOAT_TYPES

    def _is_const(self, name: str) -> bool:
        return name in self.constants

    # -- layers ------------------------------------------------------------------------
    def _layer(self, node: onnx.NodeProto, index: int, path: str) -> Layer | None:
        op, ins = node.op_type, list(node.input)
        weights: list[WeightInfo | None] = []
        acts: list[str] = []
        bias_names: list[str] = []
        if op in ("Conv", "ConvTranspose") and len(ins) >= 2:
            ch, blk = (0, 1) if op == "Conv" else (1, 0)
            weights = [self._weight(ins[1], ch, blk)]
            acts = [ins[0]]
            bias_names = ins[2:3]
        elif op == "Gemm" and len(ins) >= 2:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            weights = [self._weight(ins[1], 0 if trans_b else 1, 1 if trans_b else 0)]
            acts = [ins[0]]
            bias_names = ins[2:3]
        elif op == "MatMul" and len(ins) == 2:
            a_const, b_const = self._is_const(ins[0]), self._is_const(ins[1])
            if b_const and not a_const:
                weights = [self._weight(ins[1], -1, -2)]
                acts = [ins[0]]
            elif a_const and not b_const:
                weights = [self._weight(ins[0], 0, 1)]
                acts = [ins[1]]
        elif op == "Gather" and len(ins) == 2 and not self._is_const(ins[1]):
            weights = [self._weight(ins[0], 0, 1)]
        elif op in RECURRENT and len(ins) >= 3:
            weights = [self._weight(ins[1], 1, 2), self._weight(ins[2], 1, 2)]
            acts = [ins[0]]
            bias_names = ins[3:4]
        found = [w for w in weights if w is not None]
        if not found or len(found) != len(weights):
            return None
        acts = [a for a in acts if a and not self._is_const(a) and self._is_float_value(a)]
        biases = tuple(
            b
            for b in (self._weight(n, 0, 0) for n in bias_names if n and self._const_float(n))
            if b is not None
        )
        return Layer(
            name=node.name,
            op_type=op,
            index=index,
            graph_path=path,
            inputs=tuple(ins),
            outputs=tuple(node.output),
            weights=tuple(found),
            biases=biases,
            activations=tuple(acts),
        )

    def _is_float_value(self, name: str) -> bool:
        t = self.value_info.get(name)
        return t is None or np.dtype(t.dtype).kind == "f"

    # -- walk --------------------------------------------------------------------------
    def walk(self, graph: onnx.GraphProto, path: str) -> None:
        producer: dict[str, str] = {}
        inputs = {v.name for v in graph.input}
        for node in graph.node:
            index = len(self.nodes)
            layer = self._layer(node, index, path)
            self.nodes.append(
                NodeInfo(
                    node.name,
                    node.op_type,
                    tuple(node.input),
                    tuple(node.output),
                    path,
                    layer is not None,
                )
            )
            if layer is not None:
                self.layers.append(layer)
            for t in node.input:
                if t in producer:
                    self.edges.append(Edge(producer[t], node.name, t))
                elif t in inputs and not path:
                    self.edges.append(Edge(f"input:{t}", node.name, t))
            for o in node.output:
                if o:
                    producer[o] = node.name
            for attr_name, sub in subgraphs(node):
                self.walk(sub, f"{path}/{node.name}/{attr_name}".lstrip("/"))
        if not path:
            for v in graph.output:
                if v.name in producer:
                    self.edges.append(Edge(producer[v.name], f"output:{v.name}", v.name))

    def build(self) -> ModelInfo:
        g = self.model.graph
        self.walk(g, "")
        init_names = {t.name for t in g.initializer}
        opset = next(
            (int(o.version) for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 0
        )
        return ModelInfo(
            path=self.path,
            opset=opset,
            ir_version=int(self.model.ir_version),
            producer=" ".join(
                p for p in (self.model.producer_name, self.model.producer_version) if p
            ),
            inputs=tuple(_tensor_info(v) for v in g.input if v.name not in init_names),
            outputs=tuple(_tensor_info(v) for v in g.output),
            nodes=tuple(self.nodes),
            layers=tuple(self.layers),
            edges=tuple(self.edges),
            value_info=self.value_info,
        )


def build_inventory(model: onnx.ModelProto, path: Path | None = None) -> ModelInfo:
    """Describe ``model`` (whose nodes must already be named, see :func:`name_nodes`)."""
    return _Builder(model, path).build()
