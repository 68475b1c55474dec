"""Each layer's bytes in the file, measured on the parts it touched
(bitlens.core.export.sizing), equal the straightforward measurement: the whole model
serialized before and after the layer."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from bitlens.core.engine import Engine
from bitlens.core.export import sizing
from bitlens.core.export.exporter import ExportOptions, build
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests import builders
from tests.core.export_models import conv_net, random_feeds, transformer_block
from tests.core.test_export_shared_gemm import shared_gemm_chain
from tests.core.test_sim_equals_export import shared_bias_gemms


def _ir3_conv_net() -> onnx.ModelProto:
    """conv_net as IR 3 files are: every initializer also listed as a graph input."""
    m = conv_net(channels=8)
    m.graph.input.extend(
        onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
        for t in m.graph.initializer
    )
    m.ir_version = 3
    m.opset_import[0].version = 9
    return m


# (model, weight format, activation format, recovery method, export options)
CASES = {
    # integer kernels: activation QDQ renaming the conv's input, int32 biases replacing the
    # float ones, the deployment target's tensor quantizers
    "cnn W8A8": (lambda: conv_net(channels=8), "int8 sym ch", "uint8 asym", None, {}),
    "cnn folded int3": (lambda: conv_net(channels=8), "int3 asym blk8", None, None, {}),
    "cnn bias correction": (
        lambda: conv_net(channels=8), "int4 sym ch", None, "bias_correction", {},
    ),
    # MatMul + Add biases as int32 on the Add, MatMulNBits replacing the node
    "transformer W8A8": (lambda: transformer_block(16, 32), "int8 sym ch", "uint8 asym", None, {}),
    "transformer MatMulNBits": (
        lambda: transformer_block(16, 32), "int4 sym blk16", None, None, {"matmulnbits": True},
    ),
    "transformer awq qdq": (
        lambda: transformer_block(16, 32), "int4 sym ch", None, "awq", {"weights": "qdq"},
    ),
    # initializers listed as graph inputs (removed with the weight), an opset upgrade
    "IR 3 inputs": (_ir3_conv_net, "int8 sym ch", "uint8 asym", None, {}),
    # weights in Constant nodes (removed nodes), an opset upgrade
    "constant weights": (builders.opset12_constant_weights, "int4 sym ch", "uint8 asym", None, {}),
    # weights inside If branches and a Loop body, and read from the outer scope
    "lstm in If": (builders.lstm_in_if, "int4 sym ch", None, None, {}),
    "loop": (builders.loop_with_matmul, "int8 sym ch", "uint8 asym", None, {}),
    # one weight and bias read by three Gemms (QGemm kernels, an int32 bias copy per reader;
    # the stored reader's weight reused by the others); a bias shared with an Add
    "shared gemm": (shared_gemm_chain, "int8 sym ch", "uint8 asym", None, {}),
    "shared bias and Add": (
        lambda: shared_bias_gemms(add_bias=True), "int8 sym ch", "uint8 asym", None, {},
    ),
    "shared gemm int4": (shared_gemm_chain, "int4 sym ch", None, None, {}),
}  # fmt: skip


def _engine(proto: onnx.ModelProto) -> Engine:
    model = from_proto(proto)
    engine = Engine(model, random_feeds(model.info, 2), device="cpu")
    drain(engine.calibrate())
    return engine


def _plan(engine: Engine, wfmt: str, afmt: str | None, method: str | None) -> Plan:
    choices = {}
    for la in engine.info.layers:
        recovery = method if la.biases or method != "bias_correction" else None
        act = None if la.graph_path else afmt  # no activation quantizers inside subgraphs
        choices[la.name] = LayerChoice.of(wfmt, act, False, recovery)
    return Plan(engine.info, choices)


@pytest.mark.parametrize("case", CASES)
def test_layer_bytes_equal_whole_model_measurement(case: str, caplog) -> None:
    make, wfmt, afmt, method, options = CASES[case]
    engine = _engine(make())
    plan = _plan(engine, wfmt, afmt, method)
    opts = ExportOptions(**options)
    with caplog.at_level(logging.WARNING, logger="bitlens.core.export.exporter"):
        fast = drain(build(engine, plan, opts))
    assert not caplog.records  # the sizer's total matched: no slow re-measurement
    slow = drain(build(engine, plan, opts, exact_sizes=True))
    got = {k: r.bytes_file for k, r in fast.layers.items()}
    want = {k: r.bytes_file for k, r in slow.layers.items()}
    assert got == want
    assert any(v != 0 for v in want.values())
    assert fast.accounted_bytes == slow.accounted_bytes
    assert fast.model.SerializeToString() == slow.model.SerializeToString()


def test_an_edit_the_sizer_misses_is_measured_again(monkeypatch, caplog) -> None:
    """An edit outside the parts the sizer measures (simulated: it forgets the added
    initializers) makes its total disagree with the model; the export then measures every
    layer the slow way rather than report wrong numbers."""
    engine = _engine(conv_net(channels=8))
    plan = _plan(engine, "int4 sym ch", None, None)
    slow = drain(build(engine, plan, exact_sizes=True))
    real_delta = sizing.LayerSizer.delta

    def forgetful(self, mark):
        mark = sizing.Mark(mark.names, mark.owners, mark.before, frozenset(
            t.name for t in self.model.graph.initializer
        ))  # fmt: skip
        return real_delta(self, mark)

    monkeypatch.setattr(sizing.LayerSizer, "delta", forgetful)
    with caplog.at_level(logging.WARNING, logger="bitlens.core.export.exporter"):
        built = drain(build(engine, plan))
    assert any("the slow way" in r.getMessage() for r in caplog.records)
    assert {k: r.bytes_file for k, r in built.layers.items()} == {
        k: r.bytes_file for k, r in slow.layers.items()
    }


def _with_header(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every kind of model field besides the graph: scalars, strings, repeated messages."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.doc_string = "a model"
    m.producer_name, m.producer_version, m.model_version = "test", "1.0", 7
    onnx.helper.set_model_props(m, {"k": "v" * 300})
    m.functions.append(
        onnx.helper.make_function(
            "local", "F", ["a"], ["b"], [onnx.helper.make_node("Relu", ["a"], ["b"])],
            [onnx.helper.make_opsetid("", 13)],
        )
    )  # fmt: skip
    m.opset_import.append(onnx.helper.make_opsetid("local", 1))
    return m


def test_file_bytes_is_the_serialized_size() -> None:
    """The header measured apart from the graph adds up to the whole model's encoding."""
    m = _with_header(conv_net())
    assert sizing.file_bytes(m) == len(m.SerializeToString()) == m.ByteSize()
    assert sizing.file_bytes(m, sizing.graph_bytes(m)) == m.ByteSize()
    bare = onnx.ModelProto()
    assert sizing.file_bytes(bare) == 0
    bare.ir_version = 9  # no graph field at all: no graph length prefix is counted
    assert sizing.file_bytes(bare) == bare.ByteSize()


def test_file_bytes_counts_unknown_fields() -> None:
    """A field this onnx does not know (a newer ONNX wrote it) is kept in the encoding."""
    m = _with_header(conv_net())
    extra = b"\xf8\x07\x05"  # field 127, varint 5: unknown to ModelProto
    parsed = onnx.ModelProto.FromString(m.SerializeToString() + extra)
    assert parsed.ByteSize() == m.ByteSize() + len(extra)
    assert sizing.file_bytes(parsed) == parsed.ByteSize()


def test_sizer_follows_replaced_and_removed_parts_by_name() -> None:
    """The sizer finds a layer's parts through an index of names, kept across layers while
    the graph is edited: initializers replaced under the same name, removed (their
    messages freed, so their ids may come back for others), added; nodes replaced, inserted
    before the layer, renamed. Each layer's delta equals the whole model's growth."""
    proto = conv_net(channels=4)
    layers = from_proto(proto).info.layers
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    sizer = sizing.LayerSizer(model, sizing.file_bytes(model))
    for i, layer in enumerate(layers):
        before = sizing.file_bytes(model)
        mark = sizer.mark(layer)
        w = layer.weights[0].name
        old = next(t for t in g.initializer if t.name == w)
        codes = onnx.numpy_helper.from_array(
            onnx.numpy_helper.to_array(old).astype(np.int8), f"{w}_q"
        )
        g.initializer.remove(old)  # freed: its id may be reused by the tensors added next
        g.initializer.extend([codes, onnx.numpy_helper.from_array(np.float32(0.5), f"s{i}")])
        node = next(n for n in g.node if layer.outputs[0] in n.output)
        g.node.insert(
            list(g.node).index(node),
            onnx.helper.make_node("DequantizeLinear", [f"{w}_q", f"s{i}"], [w]),
        )
        if i % 2:  # the node replaced by a copy with a new name and attribute
            new = onnx.NodeProto()
            new.CopyFrom(node)
            new.name = f"{node.name}_replaced"
            new.doc_string = "x" * 40 * (i + 1)
            g.node.remove(node)
            g.node.insert(i, new)
        else:  # edited in place: an input renamed through an Identity
            g.node.insert(0, onnx.helper.make_node("Identity", [node.input[0]], [f"id{i}"]))
            node.input[0] = f"id{i}"
        grown = sizer.delta(mark)
        assert grown == sizing.file_bytes(model) - before, layer.name
    assert sizer.total() == model.ByteSize()
