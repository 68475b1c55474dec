"""The neutral description of a model: nodes, edges, layers, inputs and outputs.

:func:`build_inventory` reads a ``ModelProto`` without changing it and
returns a :class:`~bitlens.core.model.types.ModelInfo`. Node order and names
come from :func:`bitlens.core.model.graph.walk` (the loader writes the same
names into its copy of the model, so both agree).

Edges are data-flow between nodes by tensor name: ``input:<name>`` for a
model input, ``output:<name>`` for a model output. A node in a subgraph that
reads a value computed outside it gets an edge from that outer producer; the
node owning the subgraph gets the same edge too, so the main graph alone
shows every dependency. Constants (initializers) make no edges; Constant
nodes are nodes and do.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from bitlens.core.errors import ModelLoadError
from bitlens.core.model.add_bias import with_add_biases
from bitlens.core.model.graph import GraphOrderError, NodeSlot, outer_names, subgraphs, walk
from bitlens.core.model.layers import find_layer
from bitlens.core.model.shapes import infer_value_info
from bitlens.core.model.tensors import value_info_to_tensor
from bitlens.core.model.types import Edge, Layer, ModelInfo, NodeInfo, TensorInfo


def build_inventory(
    proto: onnx.ModelProto,
    path: Path | None = None,
    slots: list[NodeSlot] | None = None,
) -> ModelInfo:
    """Describe ``proto``. ``slots`` may pass a walk already done by the caller."""
    label = str(path) if path is not None else "model"
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelLoadError(f"{label}: the model has no graph nodes")
    if slots is None:
        try:
            slots = walk(proto)
        except GraphOrderError as exc:
            raise ModelLoadError(f"{label}: {exc}") from None
    graph = proto.graph
    value_info = infer_value_info(proto)

    def dtype_of(name: str) -> str | None:
        info = value_info.get(name)
        return info.dtype if info is not None else None

    init_names = {t.name for t in graph.initializer} | {
        s.values.name for s in graph.sparse_initializer
    }
    inputs = tuple(value_info_to_tensor(i) for i in graph.input if i.name not in init_names)
    outputs = tuple(value_info_to_tensor(o) for o in graph.output)

    layers: list[Layer] = []
    nodes: list[NodeInfo] = []
    for slot in slots:
        layer = find_layer(slot, dtype_of)
        if layer is not None:
            layers.append(layer)
        node = slot.node
        nodes.append(
            NodeInfo(
                name=slot.name,
                op_type=node.op_type,
                inputs=tuple(node.input),
                outputs=tuple(node.output),
                graph_path=slot.graph_path,
                is_layer=layer is not None,
            )
        )

    return ModelInfo(
        path=path,
        opset=_opset(proto),
        ir_version=int(proto.ir_version),
        producer=" ".join(p for p in (proto.producer_name, proto.producer_version) if p),
        inputs=inputs,
        outputs=outputs,
        nodes=tuple(nodes),
        layers=tuple(with_add_biases(layers, graph)),
        edges=_edges(slots, inputs, outputs),
        value_info=value_info,
    )


def _opset(proto: onnx.ModelProto) -> int:
    for op in proto.opset_import:
        if op.domain in ("", "ai.onnx"):
            return int(op.version)
    return 0


def _edges(
    slots: list[NodeSlot], inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...]
) -> tuple[Edge, ...]:
    model_inputs = {t.name for t in inputs}
    # producers[graph_path][tensor] = node name; lookups walk outward through parents.
    producers: dict[str, dict[str, str]] = {}
    parent_path: dict[str, str] = {}
    for slot in slots:
        table = producers.setdefault(slot.graph_path, {})
        for out in slot.node.output:
            if out:
                table.setdefault(out, slot.name)
        for label, _ in subgraphs(slot.node):
            parent_path[f"{slot.name}/{label}"] = slot.graph_path

    def source(name: str, path: str | None) -> str | None:
        while path is not None:
            src = producers.get(path, {}).get(name)
            if src is not None:
                return src
            path = parent_path.get(path) if path else None
        return f"input:{name}" if name in model_inputs else None

    edges: list[Edge] = []
    seen: set[tuple[str, str, str]] = set()

    def add(src: str | None, dst: str, tensor: str) -> None:
        if src is None or src == dst or (src, dst, tensor) in seen:
            return
        seen.add((src, dst, tensor))
        edges.append(Edge(src, dst, tensor))

    for slot in slots:
        # a subgraph's own inputs shadow outer names; the main graph's are model inputs
        local = {i.name for i in slot.scope.graph.input} if slot.graph_path else set()
        for name in slot.node.input:
            if not name or (slot.graph_path and name in local):
                continue
            const = slot.scope.resolve(name)
            if const is None or const.node is not None:  # initializers make no edges
                add(source(name, slot.graph_path), slot.name, name)
        for _, g in subgraphs(slot.node):
            for name in sorted(outer_names(g)):
                const = slot.scope.resolve(name)
                if const is None or const.node is not None:
                    add(source(name, slot.graph_path), slot.name, name)
    for out in outputs:
        add(source(out.name, ""), f"output:{out.name}", out.name)
    return tuple(edges)
