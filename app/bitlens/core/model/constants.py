"""Where every constant tensor of a model lives: initializers and Constant nodes, at any depth.

Exporters store weights as graph initializers, as the outputs of Constant
nodes (older PyTorch, TensorFlow converters), or inside If/Loop/Scan bodies.
This index finds all of them once, with the subgraph path that defines them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx

from bitlens.core.model.types import Storage


@dataclass(frozen=True)
class ConstantEntry:
    tensor: onnx.TensorProto
    storage: Storage
    graph_path: str


def subgraphs(node: onnx.NodeProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """(attribute name, graph) of every subgraph attribute of ``node``."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            for i, g in enumerate(attr.graphs):
                yield f"{attr.name}[{i}]", g


def constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The value of a Constant node given as a tensor (``value``); scalars/lists are not weights."""
    for attr in node.attribute:
        if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
            t = onnx.TensorProto()
            t.CopyFrom(attr.t)
            t.name = node.output[0]
            return t
    return None


class ConstantIndex:
    """Name -> constant, over the main graph and every nested subgraph."""

    def __init__(self, graph: onnx.GraphProto):
        self.entries: dict[str, ConstantEntry] = {}
        self._walk(graph, "")

    def _walk(self, graph: onnx.GraphProto, path: str) -> None:
        for t in graph.initializer:
            self.entries.setdefault(t.name, ConstantEntry(t, Storage.INITIALIZER, path))
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                t = constant_tensor(node)
                if t is not None:
                    self.entries.setdefault(
                        node.output[0], ConstantEntry(t, Storage.CONSTANT, path)
                    )
            for attr_name, sub in subgraphs(node):
                self._walk(sub, f"{path}/{node.name}/{attr_name}".lstrip("/"))

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def get(self, name: str) -> ConstantEntry | None:
        return self.entries.get(name)

    def tensor(self, name: str) -> onnx.TensorProto | None:
        e = self.entries.get(name)
        return None if e is None else e.tensor
