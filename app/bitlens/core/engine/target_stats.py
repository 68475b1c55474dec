"""Calibration statistics of tensors no layer reads: a deployment target's extra quantizers.

The float reference the engine keeps holds only layer inputs and outputs; a
target also quantizes Sigmoid, Mul, Add, Concat... outputs. Their statistics
come from one float session exposing them, run over the calibration samples
a few tensors at a time (all of a large model's activations at once would
not fit in memory).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx

from bitlens.core.engine.calibration import ActivationStats
from bitlens.core.model import tensors
from bitlens.core.model.types import NodeInfo

PER_RUN = 32  # tensors fetched per float run

Run = Callable[[object, Sequence[str], Mapping[str, np.ndarray]], list[np.ndarray]]


def collect(
    sim_model: onnx.ModelProto,
    make_session: Callable[[onnx.ModelProto], object],
    run: Run,
    names: Sequence[str],
    feeds: Iterable[Mapping[str, np.ndarray]],
) -> dict[str, ActivationStats]:
    """Statistics of the float tensors ``names`` over ``feeds``; ``sim_model`` exposes them."""
    sess = make_session(sim_model)
    feed_list = list(feeds)
    out: dict[str, ActivationStats] = {}
    for k in range(0, len(names), PER_RUN):
        chunk = list(names[k : k + PER_RUN])
        got: dict[str, list[np.ndarray]] = {n: [] for n in chunk}
        for feed in feed_list:
            for n, v in zip(chunk, run(sess, chunk, feed), strict=True):
                got[n].append(v)
        for n, values in got.items():
            if np.asarray(values[0]).dtype.kind == "f":
                out[n] = ActivationStats.of(values, n)
    return out


def attribute_reader(proto: onnx.ModelProto) -> Callable[[NodeInfo, str], object | None]:
    """``read(node, name)``: a main-graph node's attribute value, None when it does not set
    it, "?" when the node cannot be found (bitlens.core.targets treats that as unknown)."""
    by_output = {n.output[0]: n for n in proto.graph.node if n.output}

    def read(node: NodeInfo, name: str) -> object | None:
        found = by_output.get(node.outputs[0]) if node.outputs else None
        if found is None:
            return "?"
        for attr in found.attribute:
            if attr.name == name:
                return onnx.helper.get_attribute_value(attr)
        return None

    return read


def scalar_reader(
    proto: onnx.ModelProto, value_of: Callable[[onnx.TensorProto], np.ndarray]
) -> Callable[[str], float | None]:
    """``read(tensor)``: the value of a main-graph float32 constant holding one element
    (an initializer or a Constant node), None for anything else. ``value_of`` reads an
    initializer (external data included)."""
    g = proto.graph
    inits = {
        t.name: t
        for t in g.initializer
        if t.data_type == onnx.TensorProto.FLOAT and int(np.prod(t.dims)) == 1
    }
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant" and n.output}
    cache: dict[str, float | None] = {}

    def read(name: str) -> float | None:
        if name not in cache:
            value: np.ndarray | None = None
            if name in inits:
                value = np.asarray(value_of(inits[name]))
            elif name in consts:
                try:
                    value = np.asarray(tensors.constant_value(consts[name]))
                except ValueError:
                    value = None
            ok = value is not None and value.dtype == np.float32 and value.size == 1
            cache[name] = float(value.reshape(())) if ok else None
        return cache[name]

    return read
