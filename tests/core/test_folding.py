"""Weights computed from constants are folded at load, at any depth (issue 9, item 5).

Silero VAD v5 builds each LSTM's W and R through Slice/Concat/Unsqueeze of
Constant nodes two If levels deep; unfolded, Bitlens listed its convs and
missed the LSTMs. The reference for every folded value is numpy on the
constants, for every output a plain ONNX Runtime session on the original file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.cli import main
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto, load_model
from bitlens.core.plan import Plan
from tests.builders import FLOAT, bias, model, weights

T, IN, H = 4, 8, 6  # sequence length, input size, hidden size


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def _gates(w: np.ndarray) -> np.ndarray:
    """PyTorch's gate order (i, f, g, o) as ONNX's (i, o, f, c): what exporters do with Slices."""
    i, f, g, o = np.split(w, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def _lstm_branch(
    name: str, seed: int, w_name: str
) -> tuple[onnx.GraphProto, dict[str, np.ndarray]]:
    """A graph running one LSTM whose W, R and B are computed from constants::

        W = Unsqueeze(Concat(Slice(Cw, i), Slice(Cw, o), Slice(Cw, f), Slice(Cw, g)), 0)
        R = Unsqueeze(Transpose(Cr), 0)          Cr stored as [H, 4H]
        B = Unsqueeze(Concat(Cb_in, Cb_rec), 0)
        x -> LSTM(x, W, R, B) -> Y_h

    ``Cw`` (``w_name``) is read from the outer scope; Cr and Cb are Constant nodes here.
    Returns the graph and the folded values computed with numpy.
    """
    cw = weights((4 * H, IN), seed=seed, fan_in=IN)
    cr = weights((4 * H, H), seed=seed + 1, fan_in=H).T.copy()
    cb_in, cb_rec = bias(4 * H, seed=seed + 2), bias(4 * H, seed=seed + 3)
    p = name
    nodes = [
        _const(f"{p}.Cr", cr),
        _const(f"{p}.Cb_in", cb_in),
        _const(f"{p}.Cb_rec", cb_rec),
        _const(f"{p}.axes0", np.array([0], np.int64)),
        _const(f"{p}.ax", np.array([0], np.int64)),
    ]
    gate_slices = []
    for k, gate in enumerate((0, 3, 1, 2)):  # i, o, f, g from PyTorch's i, f, g, o
        nodes += [
            _const(f"{p}.s{k}", np.array([gate * H], np.int64)),
            _const(f"{p}.e{k}", np.array([(gate + 1) * H], np.int64)),
            helper.make_node("Slice", [w_name, f"{p}.s{k}", f"{p}.e{k}", f"{p}.ax"], [f"{p}.g{k}"]),
        ]
        gate_slices.append(f"{p}.g{k}")
    nodes += [
        helper.make_node("Concat", gate_slices, [f"{p}.Wc"], axis=0),
        helper.make_node("Unsqueeze", [f"{p}.Wc", f"{p}.axes0"], [f"{p}.W"]),
        helper.make_node("Transpose", [f"{p}.Cr"], [f"{p}.Rt"], perm=[1, 0]),
        helper.make_node("Unsqueeze", [f"{p}.Rt", f"{p}.axes0"], [f"{p}.R"]),
        helper.make_node("Concat", [f"{p}.Cb_in", f"{p}.Cb_rec"], [f"{p}.Bc"], axis=0),
        helper.make_node("Unsqueeze", [f"{p}.Bc", f"{p}.axes0"], [f"{p}.B"]),
        helper.make_node(
            "LSTM", ["x", f"{p}.W", f"{p}.R", f"{p}.B"], ["", f"{p}.h"], name=f"{p}_lstm",
            hidden_size=H,
        ),
    ]  # fmt: skip
    out = helper.make_tensor_value_info(f"{p}.h", FLOAT, [1, 1, H])
    graph = helper.make_graph(nodes, name, [], [out])
    ref = {
        f"{p}.W": _gates(cw)[None],
        f"{p}.R": cr.T[None],
        f"{p}.B": np.concatenate([cb_in, cb_rec])[None],
        "Cw": cw,
    }
    return graph, ref


def nested_if_lstm() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Three LSTMs with computed weights, two of them two If levels deep::

    c1, c2, x[4,1,8] -> If(c1) -> h[1,1,6]
        then: If(c2)
            then: LSTM "deep_a" (W from main-graph Constant Cw_a)
            else: LSTM "deep_b" (W from main-graph Constant Cw_b)
        else: LSTM "shallow" (W from main-graph Constant Cw_c)
    """
    deep_a, ref_a = _lstm_branch("deep_a", 10, "Cw_a")
    deep_b, ref_b = _lstm_branch("deep_b", 20, "Cw_b")
    shallow, ref_c = _lstm_branch("shallow", 30, "Cw_c")
    inner = helper.make_node(
        "If", ["c2"], ["inner_h"], name="inner_if", then_branch=deep_a, else_branch=deep_b
    )
    then_g = helper.make_graph(
        [inner], "outer_then", [], [helper.make_tensor_value_info("inner_h", FLOAT, [1, 1, H])]
    )
    outer = helper.make_node(
        "If", ["c1"], ["h"], name="outer_if", then_branch=then_g, else_branch=shallow
    )
    nodes = [
        _const("Cw_a", ref_a.pop("Cw")),
        _const("Cw_b", ref_b.pop("Cw")),
        _const("Cw_c", ref_c.pop("Cw")),
        outer,
    ]
    g = helper.make_graph(
        nodes,
        "nested_if_lstm",
        [
            helper.make_tensor_value_info("c1", TensorProto.BOOL, []),
            helper.make_tensor_value_info("c2", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", FLOAT, [T, 1, IN]),
        ],
        [helper.make_tensor_value_info("h", FLOAT, [1, 1, H])],
    )
    return model(g, opset=17), {**ref_a, **ref_b, **ref_c}


def opset12_computed_weights() -> onnx.ModelProto:
    """An old exporter's model: opset 12, weights reshaped and transposed from Constants::

    x[1,3,6,6] -> Conv(W = Reshape(Constant flat[162], Constant [6,3,3,3])) -> Relu
               -> Flatten -> MatMul(B = Transpose(Constant [4,216])) -> y[1,4]
    """
    w1 = weights((6, 3, 3, 3), seed=61)
    w2 = weights((4, 216), seed=62)
    nodes = [
        _const("flat", w1.reshape(-1)),
        _const("shape", np.array(w1.shape, np.int64)),
        helper.make_node("Reshape", ["flat", "shape"], ["w1"]),
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        _const("w2t", w2),
        helper.make_node("Transpose", ["w2t"], ["w2"], perm=[1, 0]),
        helper.make_node("MatMul", ["f", "w2"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "opset12_computed",
        [helper.make_tensor_value_info("x", FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 4])],
    )
    return model(g, opset=12)


def _feeds(c1: bool, c2: bool, seed: int = 0) -> dict[str, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((T, 1, IN)).astype(np.float32)
    return {"c1": np.array(c1), "c2": np.array(c2), "x": x}


def test_lstms_two_if_levels_deep_are_listed_with_their_folded_weights() -> None:
    m, ref = nested_if_lstm()
    loaded = from_proto(m)
    lstms = {la.name: la for la in loaded.info.layers if la.op_type == "LSTM"}
    assert sorted(lstms) == ["deep_a_lstm", "deep_b_lstm", "shallow_lstm"]
    assert lstms["deep_a_lstm"].graph_path == "inner_if/then_branch"
    for name, layer in lstms.items():
        prefix = name.removesuffix("_lstm")
        for w in layer.weights:
            np.testing.assert_array_equal(loaded.weight(w), ref[w.name], err_msg=w.name)
        assert {w.name for w in layer.weights} >= {f"{prefix}.W", f"{prefix}.R"}
    (note,) = loaded.info.notes
    assert "computed from constants" in note and "2 subgraph level(s) deep" in note


def test_folding_leaves_the_outputs_as_they_were() -> None:
    m, _ = nested_if_lstm()
    loaded = from_proto(m)
    assert not any(n.op_type in ("Slice", "Concat") for n in _all_nodes(loaded.proto.graph))
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    folded = ort.InferenceSession(
        loaded.proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    for c1, c2 in ((True, True), (True, False), (False, True)):
        feeds = _feeds(c1, c2)
        np.testing.assert_array_equal(folded.run(None, feeds)[0], ref.run(None, feeds)[0])


def _all_nodes(g: onnx.GraphProto):
    for n in g.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)


def test_engine_quantizes_the_folded_weight() -> None:
    """W8 on the deepest LSTM changes the output of the path through it, and only that one."""
    m, _ = nested_if_lstm()
    loaded = from_proto(m)
    feeds = [_feeds(True, True, s) for s in range(2)]
    data = Dataset.from_arrays(
        loaded.info, {k: np.stack([f[k] for f in feeds]) for k in ("c1", "c2", "x")}
    )
    engine = Engine(loaded, data, device="cpu")
    plan = Plan.uniform(loaded.info, "int8 sym ch", None, layers=["deep_a_lstm"])
    ev = engine.evaluate(plan)
    werr = ev.layers["deep_a_lstm"].weight
    assert werr is not None and 30 < werr.sqnr_db < 60
    (out,) = ev.outputs.values()
    assert 20 < out.error.sqnr_db < 80  # quantized, so not equal; close, so not broken


def test_export_stores_the_folded_weights_quantized(tmp_path: Path, capsys) -> None:
    m, _ = nested_if_lstm()
    src = tmp_path / "vad_like.onnx"
    onnx.save(m, src)
    data = tmp_path / "data.npz"
    feeds = [_feeds(True, True, s) for s in range(4)]
    np.savez(data, **{k: np.stack([f[k] for f in feeds]) for k in ("c1", "c2", "x")})
    out = tmp_path / "q.onnx"
    rc = main(["export", str(src), "--preset", "W8A16", "--data", str(data), "-o", str(out),
               "--json", "--device", "cpu"])  # fmt: skip
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert rc == 0, report["failures"]
    layers = {la["name"]: la for la in report["layers"]}
    assert {"deep_a_lstm", "deep_b_lstm", "shallow_lstm"} <= set(layers)
    for name in ("deep_a_lstm", "deep_b_lstm", "shallow_lstm"):
        stored = layers[name]["weights"]
        assert stored and all(w["exact"] and "int8" in w["stored_as"] for w in stored), stored
    assert "computed from constants" in captured.err


def test_opset12_weights_from_reshape_and_transpose() -> None:
    m = opset12_computed_weights()
    loaded = from_proto(m)
    assert [la.op_type for la in loaded.info.layers] == ["Conv", "MatMul"]
    conv, mm = loaded.info.layers
    np.testing.assert_array_equal(loaded.weight(conv.weights[0]), weights((6, 3, 3, 3), seed=61))
    np.testing.assert_array_equal(loaded.weight(mm.weights[0]), weights((4, 216), seed=62).T)
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    engine = Engine(loaded, Dataset.from_arrays(loaded.info, {"x": x}), device="cpu")
    (got,) = engine.run_outputs(Plan(loaded.info)).values()
    np.testing.assert_allclose(got[0], ref.run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["dequantize", "fp16-cast"])
def test_quantized_and_fp16_storage_is_not_folded(kind: str) -> None:
    """DequantizeLinear of int8 codes stays quantized; an fp16 weight stays fp16."""
    w = weights((4, 8), seed=5)
    if kind == "dequantize":
        codes = np.clip(np.round(w / 0.01), -128, 127).astype(np.int8)
        nodes = [
            _const("codes", codes),
            _const("scale", np.array(0.01, np.float32)),
            helper.make_node("DequantizeLinear", ["codes", "scale"], ["w"]),
        ]
    else:
        nodes = [
            _const("w16", w.astype(np.float16)),
            helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT),
        ]
    nodes.append(helper.make_node("MatMul", ["x", "w"], ["y"]))
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 8])],
    )  # fmt: skip
    loaded = from_proto(model(g, opset=17))
    ops = [n.op_type for n in loaded.proto.graph.node]
    assert ("DequantizeLinear" if kind == "dequantize" else "Cast") in ops
    assert not any("computed from constants" in n for n in loaded.info.notes)


def test_the_users_file_is_not_changed(tmp_path: Path) -> None:
    m, _ = nested_if_lstm()
    src = tmp_path / "m.onnx"
    onnx.save(m, src)
    before = src.read_bytes()
    assert load_model(src).info.notes
    assert src.read_bytes() == before


def test_a_subgraph_that_cannot_be_folded_is_left_as_is_and_named(monkeypatch) -> None:
    from onnx.reference import ReferenceEvaluator

    def fail(self, *args, **kwargs):
        raise RuntimeError("no kernel for this op")

    monkeypatch.setattr(ReferenceEvaluator, "run", fail)
    m, _ = nested_if_lstm()
    loaded = from_proto(m)  # still opens
    assert not [la for la in loaded.info.layers if la.op_type == "LSTM"]
    (note,) = loaded.info.notes
    assert note.startswith("could not fold constants in ") and "no kernel for this op" in note
    assert any(n.op_type == "Slice" for n in _all_nodes(loaded.proto.graph))


def test_weights_decoded_from_int8_codes_are_named_as_already_quantized() -> None:
    """tinyocr's PP-OCRv6 recognizer stores every weight as int8 codes, Cast to float and
    multiplied by a per-channel scale::

        x[1,4] -> MatMul(B = Mul(Cast(Constant int8 [4,8]), Constant scale [1,8])) -> y[1,8]

    The weight folds (so it is a layer), but the note must say the file already holds it
    quantized: the sizes shown are float32, 4x what the file stores."""
    codes = np.clip(np.round(weights((4, 8), seed=9) / 0.01), -127, 127).astype(np.int8)
    scale = np.linspace(0.005, 0.02, 8, dtype=np.float32).reshape(1, 8)
    nodes = [
        _const("codes", codes),
        helper.make_node("Cast", ["codes"], ["wf"], to=TensorProto.FLOAT),
        _const("scale", scale),
        helper.make_node("Mul", ["wf", "scale"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["y"]),
    ]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 8])],
    )  # fmt: skip
    loaded = from_proto(model(g, opset=17))
    (layer,) = loaded.info.layers
    np.testing.assert_array_equal(
        loaded.weight(layer.weights[0]), (codes.astype(np.float64) * scale).astype(np.float32)
    )
    (note,) = [n for n in loaded.info.notes if "computed from constants" in n]
    assert "1 of them decode integer codes stored in the file (1 from int8" in note
    assert "already weight-quantized" in note
