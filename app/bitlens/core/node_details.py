"""Everything about one node that the graph's properties pane shows, without Qt.

Op type, attributes, the shapes of its inputs and outputs, and for every
constant input (weight, bias, any initializer) its statistics: shape,
dtype, min / max / mean / std, bytes and the format it is stored in under
the current plan. The attributes are read from the loaded protobuf (the
neutral :class:`~bitlens.core.model.types.ModelInfo` keeps no attributes:
only this pane needs them), once per node asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from bitlens.core.model.loader import LoadedModel
from bitlens.core.model.types import Dim
from bitlens.core.plan import Plan

MAX_LIST = 16  # longer attribute lists are cut to this many items and "… (N in all)"


@dataclass(frozen=True)
class ValueDesc:
    name: str
    shape: tuple[Dim, ...] | None  # None: unknown
    dtype: str  # "" when unknown
    constant: bool = False
    value: str = ""  # a small constant's values (at most MAX_LIST of them)


@dataclass(frozen=True)
class WeightStats:
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    min: float
    max: float
    mean: float
    std: float
    format: str  # how the plan stores it: a format name, "float" or "float (bias)"
    pending: bool = False  # min..std not computed yet (NaN): asked for with a size limit


@dataclass(frozen=True)
class NodeDetails:
    name: str
    op_type: str
    domain: str
    graph_path: str
    is_layer: bool
    attributes: tuple[tuple[str, str], ...]
    inputs: tuple[ValueDesc, ...]
    outputs: tuple[ValueDesc, ...]
    weights: tuple[WeightStats, ...]


class NodeIndex:
    """The nodes of one loaded model by name (the names :mod:`bitlens.core.model.graph`
    wrote into the proto, equal to ``ModelInfo``'s)."""

    def __init__(self, model: LoadedModel):
        self.model = model
        self._nodes: dict[str, onnx.NodeProto] = {}
        self._elem: dict[str, int] = {}  # constant name -> ONNX element type as stored
        stack = [model.graph_proto.graph]  # metadata only: external data stays in its files
        while stack:
            graph = stack.pop()
            for t in graph.initializer:
                self._elem.setdefault(t.name, t.data_type)
            for node in graph.node:
                self._nodes.setdefault(node.name, node)
                if node.op_type == "Constant":
                    for attr in node.attribute:
                        if attr.type == onnx.AttributeProto.TENSOR and node.output:
                            self._elem.setdefault(node.output[0], attr.t.data_type)
                for attr in node.attribute:
                    if attr.type == onnx.AttributeProto.GRAPH:
                        stack.append(attr.g)
                    elif attr.type == onnx.AttributeProto.GRAPHS:
                        stack.extend(attr.graphs)
        self._paths = {n.name: n.graph_path for n in model.info.nodes}
        self._stats: dict[tuple[str, str], tuple[float, float, float, float]] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._nodes

    def details(
        self, name: str, plan: Plan | None = None, *, stats_limit: int | None = None
    ) -> NodeDetails:
        """The details of node ``name``; KeyError if the model has no such node.

        ``stats_limit``: weights of more values whose statistics are not known yet come back
        ``pending`` (a window thread asks so; a second call without the limit computes them).
        """
        node = self._nodes[name]
        info = self.model.info
        path = self._paths.get(name, "")
        layer = info.layer_index.get(name)
        choice = plan[name] if plan is not None and layer is not None else None
        formats: dict[str, str] = {}
        if layer is not None:
            w = None if choice is None or choice.weight is None else choice.weight.name
            for wi in layer.weights:
                formats[wi.name] = w or "float"
            for b in layer.biases:
                formats.setdefault(b.name, "float (bias)")
        inputs, weights = [], []
        for tensor in node.input:
            if not tensor:
                continue
            values = self._constant(tensor, path)
            if values is None:
                inputs.append(self._value(tensor))
                continue
            small = values.size <= MAX_LIST
            shown = str(values.ravel().tolist()) if small else ""
            dtype = self._stored_dtype(tensor, values)
            inputs.append(ValueDesc(tensor, tuple(values.shape), dtype, True, shown))
            if small and values.dtype.kind != "f":
                continue  # a shape, axes or indices: its value says it all
            pending = (
                stats_limit is not None
                and values.size > stats_limit
                and (path, tensor) not in self._stats
            )
            lo, hi, mean, std = (np.nan,) * 4 if pending else self._stat(tensor, path, values)
            weights.append(
                WeightStats(
                    tensor, tuple(values.shape), dtype,
                    self._stored_nbytes(tensor, values), lo, hi, mean, std,
                    formats.get(tensor, "float"), pending,
                )
            )  # fmt: skip
        return NodeDetails(
            name=name,
            op_type=node.op_type,
            domain=node.domain or "ai.onnx",
            graph_path=path,
            is_layer=layer is not None,
            attributes=tuple((a.name, attribute_text(a)) for a in node.attribute),
            inputs=tuple(inputs),
            outputs=tuple(self._value(t) for t in node.output if t),
            weights=tuple(weights),
        )

    # -- helpers ------------------------------------------------------------------------
    def _constant(self, tensor: str, path: str) -> np.ndarray | None:
        for where in (path, None):  # its own graph first, then wherever the name is unique
            try:
                return self.model.weight(tensor, where)
            except KeyError:
                continue
        return None

    def _value(self, tensor: str) -> ValueDesc:
        info = self.model.info
        t = info.value_info.get(tensor)
        if t is None:
            t = next((x for x in (*info.inputs, *info.outputs) if x.name == tensor), None)
        if t is None:
            return ValueDesc(tensor, None, "")
        return ValueDesc(tensor, t.shape, t.dtype)

    def _stat(
        self, tensor: str, path: str, values: np.ndarray
    ) -> tuple[float, float, float, float]:
        key = (path, tensor)
        if key not in self._stats:
            if values.size == 0 or values.dtype.kind not in "fiub":
                self._stats[key] = (np.nan,) * 4  # type: ignore[assignment]
            else:
                v = values.astype(np.float64, copy=False)
                self._stats[key] = (
                    float(v.min()), float(v.max()), float(v.mean()), float(v.std())
                )
        return self._stats[key]

    def _stored_dtype(self, tensor: str, values: np.ndarray) -> str:
        """The dtype in the file (the loader widens fp16 and bf16 weights to float32)."""
        elem = self._elem.get(tensor)
        if elem is None:
            return values.dtype.name
        try:
            return np.dtype(helper.tensor_dtype_to_np_dtype(elem)).name
        except (KeyError, TypeError, ValueError):
            return values.dtype.name

    def _stored_nbytes(self, tensor: str, values: np.ndarray) -> int:
        try:
            size = np.dtype(self._stored_dtype(tensor, values)).itemsize
        except TypeError:
            size = values.dtype.itemsize
        return int(values.size * size)


def attribute_text(attr: onnx.AttributeProto) -> str:
    """One attribute's value in a line: lists cut at :data:`MAX_LIST` items, tensors and
    subgraphs summarized."""
    A = onnx.AttributeProto
    if attr.type == A.GRAPH:
        return f"subgraph ({len(attr.g.node)} nodes)"
    if attr.type == A.GRAPHS:
        return f"{len(attr.graphs)} subgraphs"
    if attr.type == A.TENSOR:
        t = attr.t
        dtype = helper.tensor_dtype_to_np_dtype(t.data_type).name
        shape = "×".join(map(str, t.dims)) or "scalar"
        if not t.dims or int(np.prod(t.dims)) <= MAX_LIST:
            values = onnx.numpy_helper.to_array(t).ravel().tolist()
            return f"tensor {dtype} {shape}: {values}"
        return f"tensor {dtype} {shape}"
    if attr.type in (A.TENSORS, A.SPARSE_TENSOR, A.SPARSE_TENSORS, A.TYPE_PROTO, A.TYPE_PROTOS):
        return A.AttributeType.Name(attr.type).lower()
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        items = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        if len(items) > MAX_LIST:
            return f"{items[:MAX_LIST]}… ({len(items)} in all)"
        return str(items)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
