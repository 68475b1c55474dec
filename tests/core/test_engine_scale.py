"""The engine's faster paths (issue 11) return what the straightforward ones return."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import rewrite
from bitlens.core.model.loader import from_proto
from tests.builders import opset12_constant_weights


def deep_mlp(depth: int = 40, width: int = 16, old_ir_inputs: bool = False) -> onnx.ModelProto:
    """x[N,width] -> (MatMul(W_i) + b_i -> Relu) x depth -> y; with ``old_ir_inputs`` every
    initializer is also listed as a graph input, as IR < 4 exporters wrote them."""
    rng = np.random.default_rng(3)
    nodes, inits = [], []
    x = "x"
    for i in range(depth):
        inits += [
            numpy_helper.from_array(
                (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), f"W{i}"
            ),
            numpy_helper.from_array(rng.normal(0, 0.1, width).astype(np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [x, f"W{i}"], [f"m{i}"], name=f"mm{i}"),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
            helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        x = f"r{i}"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])]
    if old_ir_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    g = helper.make_graph(
        nodes,
        "deep_mlp",
        inputs,
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", width])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _one_by_one(model: onnx.ModelProto, info) -> None:
    """The straightforward removal the engine did before: rebuild the lists per weight."""
    g = model.graph
    seen: set[str] = set()
    for layer in info.layers:
        for w in layer.weights:
            if w.name in seen:
                continue
            seen.add(w.name)
            if w.storage.name == "CONSTANT":
                idx = next(i for i, n in enumerate(g.node) if w.name in n.output)
                del g.node[idx]
            else:
                keep = [t for t in g.initializer if t.name != w.name]
                del g.initializer[:]
                g.initializer.extend(keep)
                inputs = [v for v in g.input if v.name != w.name]
                del g.input[:]
                g.input.extend(inputs)
            g.input.append(rewrite.value_info(w.name, w.dtype, w.shape))


def test_weights_to_inputs_in_one_pass_equals_removing_one_by_one() -> None:
    for proto in (deep_mlp(), deep_mlp(old_ir_inputs=True), opset12_constant_weights()):
        loaded = from_proto(proto)
        fast, slow = onnx.ModelProto(), onnx.ModelProto()
        fast.CopyFrom(loaded.proto)
        slow.CopyFrom(loaded.proto)
        rewrite.weights_to_inputs(fast, loaded.info)
        _one_by_one(slow, loaded.info)
        assert fast.SerializeToString() == slow.SerializeToString()
        weights = {w.name for layer in loaded.info.layers for w in layer.weights}
        assert not weights & {t.name for t in fast.graph.initializer}
        assert [v.name for v in fast.graph.input].count("W0" if "W0" in weights else "w1") == 1
