"""The one neutral description of a model that every view and the engine read.

Built once from the ONNX protobuf by :mod:`bitlens.core.model.inventory`;
the CLI, the window and the engine read these small frozen dataclasses,
never the raw protobuf (the exception being the engine and the exporter,
which rewrite the graph and so need :class:`LoadedModel.proto`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from bitlens.core.layer_names import short_names


class Storage(StrEnum):
    INITIALIZER = "initializer"  # a graph (or subgraph) initializer
    CONSTANT = "constant"  # the output of a Constant node (old exporters)


Dim = int | str | None  # a fixed size, a symbolic name, or unknown


@dataclass(frozen=True)
class TensorInfo:
    """A graph value: model input/output or activation."""

    name: str
    shape: tuple[Dim, ...] | None  # None: rank unknown
    dtype: str  # numpy dtype name ("float32", "int64", ...)


@dataclass(frozen=True)
class WeightInfo:
    """A constant tensor a layer can store at lower precision."""

    name: str  # the value name where it is defined in its graph
    shape: tuple[int, ...]
    dtype: str
    storage: Storage
    graph_path: str  # "" for the main graph, else e.g. "If_0/then_branch"
    channel_axis: int  # the output-channel axis, used by per-channel formats
    block_axis: int  # the reduction axis, used by block formats

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * _itemsize(self.dtype)


@dataclass(frozen=True)
class Layer:
    """One quantizable node (Conv, Gemm, MatMul with a constant, LSTM, ...)."""

    name: str  # unique node name (generated as "<op>_<index>" when the file has none)
    op_type: str
    index: int  # position in topological order among all nodes
    graph_path: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    weights: tuple[WeightInfo, ...]  # quantized by the layer's weight format
    biases: tuple[WeightInfo, ...] = ()  # other constants, kept in float
    activations: tuple[str, ...] = ()  # float activations feeding the layer (quantizable)
    scaled: bool = False  # a Gemm whose alpha or beta is not 1

    @property
    def params(self) -> int:
        return sum(w.numel for w in self.weights)

    @property
    def nbytes(self) -> int:
        """Bytes of the quantizable weights at their stored precision."""
        return sum(w.nbytes for w in self.weights)


@dataclass(frozen=True)
class NodeInfo:
    """Any node of the model, for the graph view."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    graph_path: str = ""
    is_layer: bool = False


@dataclass(frozen=True)
class Edge:
    src: str  # node name, or "input:<name>" for a model input
    dst: str  # node name, or "output:<name>" for a model output
    tensor: str


@dataclass(frozen=True)
class ModelInfo:
    path: Path | None
    opset: int
    ir_version: int
    producer: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    nodes: tuple[NodeInfo, ...]  # topological; subgraph nodes follow their parent
    layers: tuple[Layer, ...]  # topological
    edges: tuple[Edge, ...]
    value_info: dict[str, TensorInfo] = field(default_factory=dict, compare=False)
    # One-line facts the loader established that the user should read (IR version run in
    # memory, weights folded from constants, an already quantized model).
    notes: tuple[str, ...] = ()
    # Weights decoded from integer codes in the file, (graph path, name) -> the int8 format
    # that reproduces them exactly, None where none does (bitlens.core.model.stored_grid).
    stored_grids: dict[tuple[str, str], str | None] = field(default_factory=dict, compare=False)

    def layer(self, name: str) -> Layer:
        try:
            return self.layer_index[name]
        except KeyError:
            raise KeyError(name) from None

    # Computed once: the engine and plans look layers up by name for every layer of every
    # evaluation, and a scan made that quadratic in depth.
    @cached_property
    def layer_index(self) -> dict[str, Layer]:
        """Layers by name (the first, should two share one)."""
        index: dict[str, Layer] = {}
        for layer in self.layers:
            index.setdefault(layer.name, layer)
        return index

    @cached_property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @cached_property
    def short_names(self) -> dict[str, str]:
        """Per layer, the part of its name that tells it apart (core/layer_names.py), for
        narrow columns and headers; full names stay in tooltips, copy and find."""
        return short_names(self.layer_names)

    @cached_property
    def main_readers(self) -> dict[str, tuple[NodeInfo, ...]]:
        """Per tensor name, the main graph's nodes that read it, in graph order. Computed
        once: which Convs fuse into integer kernels walks it for every plan the search
        sizes (core/export/kernels.py), and building it per call was 2.3 of a 129 s
        profile of nudenet's YOLOv8n search (docs/finding-a-plan.md, session 13)."""
        readers: dict[str, list[NodeInfo]] = {}
        for node in self.nodes:
            if not node.graph_path:
                for t in node.inputs:
                    readers.setdefault(t, []).append(node)
        return {t: tuple(nodes) for t, nodes in readers.items()}

    # A weight several layers read (tied embeddings; an LSTM that PyTorch's exporter unrolled
    # into one Gemm per time step, all reading the same initializer) is stored once.
    @cached_property
    def unique_weights(self) -> tuple[WeightInfo, ...]:
        """Every quantizable weight once, in order of first use."""
        seen: dict[tuple[str, str], WeightInfo] = {}
        for layer in self.layers:
            for w in layer.weights:
                seen.setdefault((w.graph_path, w.name), w)
        return tuple(seen.values())

    @property
    def params(self) -> int:
        return sum(w.numel for w in self.unique_weights)

    @property
    def nbytes(self) -> int:
        return sum(w.nbytes for w in self.unique_weights)


def _itemsize(dtype: str) -> int:
    import numpy as np

    return int(np.dtype(dtype).itemsize)
