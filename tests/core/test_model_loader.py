"""Loading ONNX files: every user-caused failure is a one-line ModelLoadError naming the file.

Bad files are written into ``tmp_path``; external-data models are saved with
``onnx.save_model(..., save_as_external_data=True)`` and then edited to point
elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bitlens.core.errors import ModelLoadError
from bitlens.core.model import from_proto, load_model
from tests.builders import conv_net, lstm_in_if, mlp, model, weights


def _save(m: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(m.SerializeToString())
    return path


def _external(tmp_path: Path, m: onnx.ModelProto | None = None) -> Path:
    """conv_net with every initializer in ``weights.bin`` next to it."""
    path = tmp_path / "model.onnx"
    onnx.save_model(
        m or conv_net(),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return path


def _relocate(path: Path, location: str) -> None:
    """Point every external tensor of the file at ``location`` (file written raw)."""
    m = onnx.load_model(path, load_external_data=False)
    for t in m.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(m.SerializeToString())


def _fails(path: Path, *needles: str) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    _fails(tmp_path / "nope.onnx", "no such file")


def test_directory(tmp_path: Path) -> None:
    _fails(tmp_path, "directory")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    _fails(p, "empty")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_protobuf(tmp_path: Path, keep: float) -> None:
    data = conv_net().SerializeToString()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: int(len(data) * keep)])
    _fails(p, "not")


def test_random_bytes(tmp_path: Path) -> None:
    p = tmp_path / "noise.onnx"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _fails(p, "not")


def test_png(tmp_path: Path) -> None:
    p = tmp_path / "image.onnx"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    _fails(p, "PNG")


def test_text_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.onnx"
    p.write_text("this is not a model\nbut a note about one\n")
    _fails(p, "text")


def test_zip(tmp_path: Path) -> None:
    p = tmp_path / "archive.onnx"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("model.onnx", conv_net().SerializeToString())
    _fails(p, "zip")


def test_model_without_graph(tmp_path: Path) -> None:
    m = onnx.ModelProto(ir_version=8)
    m.opset_import.add(domain="", version=17)
    _fails(_save(m, tmp_path / "nograph.onnx"), "graph")


def test_model_without_nodes(tmp_path: Path) -> None:
    g = helper.make_graph([], "empty", [], [])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    _fails(_save(m, tmp_path / "nonodes.onnx"), "no graph nodes")


def test_dangling_input_is_refused(tmp_path: Path) -> None:
    m = mlp()
    m.graph.node[0].input[1] = "lost_weight"
    _fails(_save(m, tmp_path / "dangling.onnx"), "lost_weight")


def test_cycle_is_refused(tmp_path: Path) -> None:
    m = mlp()
    m.graph.node[0].input[0] = "y"  # fc1 now reads the last node's output
    _fails(_save(m, tmp_path / "cycle.onnx"), "cycle")


def test_external_data_in_folder_loads(tmp_path: Path) -> None:
    path = _external(tmp_path)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    lm = load_model(path)
    ref = conv_net()
    for t in ref.graph.initializer:
        np.testing.assert_array_equal(lm.weight(t.name), numpy_helper.to_array(t))
    # data now live in memory: nothing in the proto points at the file any more
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in lm.proto.graph.initializer)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before


def test_external_data_in_subfolder_loads(tmp_path: Path) -> None:
    path = _external(tmp_path)
    (tmp_path / "data").mkdir()
    os.replace(tmp_path / "weights.bin", tmp_path / "data" / "weights.bin")
    _relocate(path, "data/weights.bin")
    assert load_model(path).weight("fc.w").shape == (10, 16)


def test_missing_external_file(tmp_path: Path) -> None:
    path = _external(tmp_path)
    (tmp_path / "weights.bin").unlink()
    _fails(path, "weights.bin", "not found")


def test_truncated_external_file(tmp_path: Path) -> None:
    path = _external(tmp_path)
    blob = tmp_path / "weights.bin"
    blob.write_bytes(blob.read_bytes()[:100])
    _fails(path, "past the end")


@pytest.mark.parametrize("location", ["/etc/passwd", "../weights.bin", "data/../../weights.bin"])
def test_escaping_location_is_refused(tmp_path: Path, location: str) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    path = _external(inner)
    os.replace(inner / "weights.bin", tmp_path / "weights.bin")  # the escape target exists
    _relocate(path, location)
    _fails(path, "refused")


def test_symlink_out_of_folder_is_refused(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    path = _external(inner)
    os.replace(inner / "weights.bin", tmp_path / "secret.bin")
    (inner / "weights.bin").symlink_to(tmp_path / "secret.bin")
    _fails(path, "link", "refused")


def test_escape_is_refused_before_any_read(tmp_path: Path) -> None:
    """One escaping tensor refuses the load even when an earlier one is fine."""
    inner = tmp_path / "inner"
    inner.mkdir()
    path = _external(inner)
    m = onnx.load_model(path, load_external_data=False)
    last = m.graph.initializer[len(m.graph.initializer) - 1]
    for entry in last.external_data:
        if entry.key == "location":
            entry.value = "../../somewhere/else.bin"
    path.write_bytes(m.SerializeToString())
    _fails(path, "refused", repr(last.name))


def test_from_proto_copies_and_needs_a_folder_for_external_data() -> None:
    ref = conv_net()
    ref.graph.node[1].name = ""
    lm = from_proto(ref)
    assert ref.graph.node[1].name == ""  # the caller's proto is untouched
    assert lm.proto.graph.node[1].name == "Relu_1"
    ext = conv_net()
    t = ext.graph.initializer[0]
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value="w.bin")
    t.ClearField("raw_data")
    with pytest.raises(ModelLoadError, match="external file"):
        from_proto(ext)


def test_weight_values_and_errors() -> None:
    lm = from_proto(conv_net())
    w = lm.weight("conv1.w")
    assert w.dtype == np.float32 and not w.flags.writeable
    assert lm.weight("conv1.w") is w  # cached
    assert lm.weight(lm.info.layers[0].weights[0]) is w
    with pytest.raises(KeyError):
        lm.weight("no_such_tensor")


@pytest.mark.parametrize(
    ("elem", "dtype"),
    [(onnx.TensorProto.FLOAT16, np.float16), (onnx.TensorProto.BFLOAT16, ml_dtypes.bfloat16)],
)
def test_half_weights_come_back_as_float32(elem: int, dtype: type) -> None:
    """x[2,8] -> MatMul(w[8,4] fp16 or bf16) -> y[2,4]"""
    x = helper.make_tensor_value_info("x", elem, [2, 8])
    y = helper.make_tensor_value_info("y", elem, [2, 4])
    w = weights((8, 4), seed=3, fan_in=8, channel_axis=1).astype(dtype)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "fp16",
        [x],
        [y],
        [numpy_helper.from_array(w, "w")],
    )
    lm = from_proto(model(g, opset=18))
    assert lm.info.layers[0].weights[0].dtype == np.dtype(dtype).name
    assert lm.info.layers[0].nbytes == 8 * 4 * 2
    got = lm.weight("w")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, w.astype(np.float32))


def test_external_data_of_subgraph_initializers_loads(tmp_path: Path) -> None:
    path = tmp_path / "lstm.onnx"
    onnx.save_model(
        lstm_in_if(), path, save_as_external_data=True, location="lstm.bin", size_threshold=0
    )
    lm = load_model(path)
    ref = lstm_in_if().graph.node[0].attribute[1].g.initializer[0]  # then_branch's then.W
    np.testing.assert_array_equal(
        lm.weight(ref.name, "choose/then_branch"), numpy_helper.to_array(ref)
    )


@pytest.mark.parametrize("opset", [11, 12, 13])
def test_old_opsets_load(tmp_path: Path, opset: int) -> None:
    m = conv_net()
    m.opset_import[0].version = opset
    m.ir_version = 6 if opset == 11 else 7
    lm = load_model(_save(m, tmp_path / f"op{opset}.onnx"))
    assert lm.info.opset == opset and len(lm.info.layers) == 3
    assert lm.info.value_info["c2"].shape == (1, 16, 8, 8)


def test_same_weight_name_in_two_branches_needs_graph_path() -> None:
    """cond, x[2,4] -> If(then: MatMul(x, W), else: MatMul(x, W)), each branch its own W."""
    f = onnx.TensorProto.FLOAT

    def branch(name: str, seed: int) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("MatMul", ["x", "W"], [f"{name}_y"], name="mm")],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_y", f, [2, 3])],
            [numpy_helper.from_array(weights((4, 3), seed=seed, fan_in=4, channel_axis=1), "W")],
        )

    node = helper.make_node(
        "If",
        ["cond"],
        ["y"],
        name="pick",
        then_branch=branch("then", 1),
        else_branch=branch("else", 2),
    )
    g = helper.make_graph(
        [node],
        "twins",
        [
            helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", f, [2, 4]),
        ],
        [helper.make_tensor_value_info("y", f, [2, 3])],
    )
    lm = from_proto(model(g))
    # node names are unique model-wide: the second "mm" is renamed
    assert [(layer.name, layer.graph_path) for layer in lm.info.layers] == [
        ("mm", "pick/else_branch"),
        ("MatMul_2", "pick/then_branch"),
    ]
    with pytest.raises(KeyError, match="several subgraphs"):
        lm.weight("W")
    then_w = lm.weight(lm.info.layers[1].weights[0])
    np.testing.assert_array_equal(then_w, weights((4, 3), seed=1, fan_in=4, channel_axis=1))


def test_reading_external_data_yields_between_chunks_so_the_window_can_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """External weights can be gigabytes: their read is a job step like the model file's."""
    from bitlens.core.model import external, loader

    monkeypatch.setattr(external, "READ_CHUNK", 256)
    path = _external(tmp_path)
    weights = (tmp_path / "weights.bin").stat().st_size
    gen = loader.iter_load_model(path)
    steps = [s for s in gen if s.message.startswith("reading external data")]
    # every chunk of the weights file is one step, counted against the file's bytes
    assert len(steps) >= weights // 256 and steps[-1].done == steps[-1].total == weights
    gen = loader.iter_load_model(path)
    while not next(gen).message.startswith("reading external data"):
        pass
    gen.close()  # cancelled mid-read: nothing raised, nothing left open
    lm = load_model(path)
    for t in conv_net().graph.initializer:
        np.testing.assert_array_equal(lm.weight(t.name), numpy_helper.to_array(t))
