"""The inventory finds every quantizable layer real exporters produce, with the right axes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.model.types import Storage
from bitlens.core.plan import LayerChoice, Plan
from tests import builders
from tests.core.engine_models import small_cnn, two_input_stateful

ALL = {
    name: getattr(builders, name)
    for name in (
        "opset12_constant_weights",
        "lstm_in_if",
        "loop_with_matmul",
        "fp64_gemm",
        "nhwc_conv",
        "embedding_model",
        "stateful_gru",
    )
}


@pytest.mark.parametrize("name", ALL)
def test_builders_run_in_plain_ort(name: str) -> None:
    proto = ALL[name]()
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert sess.get_outputs()


def test_small_cnn_layers_axes_bytes_and_edges() -> None:
    info = from_proto(small_cnn()).info
    assert [(la.name, la.op_type) for la in info.layers] == [
        ("conv1", "Conv"),
        ("conv2", "Conv"),
        ("fc", "Gemm"),
    ]
    conv1, fc = info.layer("conv1"), info.layer("fc")
    assert conv1.weights[0].shape == (8, 3, 3, 3) and conv1.weights[0].channel_axis == 0
    assert conv1.weights[0].block_axis == 1 and conv1.biases[0].name == "b1"
    assert fc.weights[0].channel_axis == 0 and fc.weights[0].block_axis == 1  # transB=1
    assert conv1.activations == ("x",) and fc.activations == ("f",)
    assert info.params == 216 + 1152 + 160 and info.nbytes == 4 * info.params
    edges = {(e.src, e.dst, e.tensor) for e in info.edges}
    assert ("input:x", "conv1", "x") in edges and ("conv1", "relu1", "c1") in edges
    assert ("fc", "output:y", "y") in edges
    assert [n.name for n in info.nodes][:2] == ["conv1", "relu1"]
    assert info.value_info["c1"].shape == ("N", 8, 8, 8)


def test_constant_node_weights_at_opset_12_get_names() -> None:
    model = from_proto(builders.opset12_constant_weights())
    info = model.info
    assert info.opset == 12
    assert [la.op_type for la in info.layers] == ["Conv", "MatMul"]
    conv, mm = info.layers
    assert conv.name == "Conv_0" or conv.name.startswith("Conv_")
    assert conv.weights[0].storage is Storage.CONSTANT and conv.biases[0].name == "b1"
    assert mm.weights[0].channel_axis == 1 and mm.weights[0].block_axis == 0
    assert model.weight("W2").shape == (144, 5)
    assert len({n.name for n in info.nodes}) == len(info.nodes)  # unique generated names


def test_lstm_inside_if_branches() -> None:
    model = from_proto(builders.lstm_in_if())
    layers = model.info.layers
    assert [la.op_type for la in layers] == ["LSTM", "LSTM"]
    assert {la.graph_path for la in layers} == {"choose/then_branch", "choose/else_branch"}
    for la in layers:
        assert [w.shape[1] for w in la.weights] == [24, 24] and la.weights[0].channel_axis == 1
        assert la.weights[0].block_axis == 2 and la.biases
    assert model.weight("Wt").shape == (1, 24, 4)


def test_outer_scope_weight_used_inside_loop() -> None:
    info = from_proto(builders.loop_with_matmul()).info
    (layer,) = info.layers
    assert layer.name == "body_matmul" and layer.graph_path == "loop/body"
    assert layer.weights[0].graph_path == "" and layer.weights[0].storage is Storage.INITIALIZER


def test_fp64_nhwc_embedding_and_stateful_models() -> None:
    w = from_proto(builders.fp64_gemm()).info.layers[0].weights[0]
    assert w.dtype == "float64" and w.nbytes == 3 * 6 * 8
    nhwc = from_proto(builders.nhwc_conv()).info
    assert nhwc.layers[0].activations == ("xt",)
    emb = from_proto(builders.embedding_model()).info
    assert [la.op_type for la in emb.layers] == ["Gather", "MatMul"]
    assert emb.layers[0].activations == () and emb.inputs[0].shape == ("N", "L")
    gru = from_proto(builders.stateful_gru()).info
    assert gru.layers[0].op_type == "GRU" and [t.name for t in gru.inputs] == ["x", "h0"]


def test_engine_quantizes_subgraph_weights_and_refuses_their_activations() -> None:
    model = from_proto(builders.lstm_in_if())
    rng = np.random.default_rng(0)
    arrays = {"cond": np.array(True), "x": rng.normal(size=(5, 2, 4)).astype(np.float32)}
    data = Dataset((arrays, arrays), None, (0,), (1,), "test")
    engine = Engine(model, data, device="cpu")
    ev = engine.evaluate(Plan.uniform(model.info, "int4 sym ch"))
    then = next(la for la in model.info.layers if "then" in la.graph_path)
    assert ev.layers[then.name].weight.sqnr_db < 30
    assert ev.outputs["y"].error.sqnr_db < 40  # the then-branch ran with int4 weights
    with pytest.raises(Exception, match="If/Loop/Scan"):
        Plan(model.info, {then.name: LayerChoice.of(None, "uint8 asym")})


def test_multi_input_model_inputs() -> None:
    info = from_proto(two_input_stateful()).info
    assert [t.name for t in info.inputs] == ["x", "h"]
    assert [t.name for t in info.outputs] == ["y", "h_out"]
