"""Broken and hostile model files are refused at load with a one-line message naming the problem.

Each model is built in code, then damaged the way the fuzzer found (issue 10).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.errors import ModelLoadError
from bitlens.core.model.loader import from_proto, load_model
from tests.builders import mlp, opset12_constant_weights


def _save(m: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(m.SerializeToString())
    return path


def _refused(m: onnx.ModelProto, tmp_path: Path, match: str) -> str:
    with pytest.raises(ModelLoadError, match=match) as info:
        load_model(_save(m, tmp_path / "m.onnx"))
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("cut", [0, 3, 7])
def test_initializer_data_shorter_than_its_shape(tmp_path: Path, cut: int) -> None:
    m = mlp()
    t = m.graph.initializer[0]
    t.raw_data = t.raw_data[:cut]
    msg = _refused(m, tmp_path, "need")
    assert repr(t.name) in msg and f"holds {cut} bytes" in msg


def test_typed_field_count_mismatch(tmp_path: Path) -> None:
    m = mlp()
    t = m.graph.initializer[0]
    arr = numpy_helper.to_array(t)
    t.ClearField("raw_data")
    t.float_data.extend(arr.ravel()[:-1].tolist())
    assert repr(t.name) in _refused(m, tmp_path, "values in float_data")


def test_constant_node_in_a_nested_graph(tmp_path: Path) -> None:
    m = opset12_constant_weights()
    value = helper.make_tensor("cv", TensorProto.FLOAT, [4, 4], np.zeros(16, np.float32))
    value.raw_data = b"\0" * 10
    inner = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], name="bad_const", value=value)],
        "then", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4, 4])],
    )  # fmt: skip
    m.graph.node.append(
        helper.make_node("If", ["cond"], ["if_out"], then_branch=inner, else_branch=inner)
    )
    m.graph.input.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
    assert "bad_const" in _refused(m, tmp_path, "holds 10 bytes")


def test_sparse_bomb_is_refused_before_allocating(tmp_path: Path) -> None:
    m = mlp()
    values = numpy_helper.from_array(np.ones(1, np.float32), "s")
    indices = numpy_helper.from_array(np.zeros(1, np.int64), "s_idx")
    m.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [100000, 100000]))
    data = m.SerializeToString()
    assert len(data) < 10_000
    msg = _refused(m, tmp_path, "over the budget")
    assert "37.3 GiB" in msg and "[100000, 100000]" in msg


def test_sparse_indices_out_of_range(tmp_path: Path) -> None:
    m = mlp()
    values = numpy_helper.from_array(np.ones(2, np.float32), "s")
    indices = numpy_helper.from_array(np.array([1, 12], np.int64), "s_idx")
    m.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [3, 4]))
    _refused(m, tmp_path, r"index 12 is outside the shape \[3, 4\]")


def test_unknown_element_type_of_an_input(tmp_path: Path) -> None:
    m = mlp()
    m.graph.input[0].type.tensor_type.elem_type = 40
    _refused(m, tmp_path, "unknown element type 40")


def test_invalid_utf8_names_are_refused_and_producer_is_made_readable(tmp_path: Path) -> None:
    m = mlp()
    m.producer_name = "PRODUCERX"
    data = m.SerializeToString().replace(b"PRODUCERX", b"PROD\xff\xfeERX")
    node = m.graph.node[0].name.encode()
    p = tmp_path / "p.onnx"
    p.write_bytes(data)
    loaded = load_model(p)
    assert loaded.info.producer == "PROD\\xff\\xfeERX" if hasattr(loaded.info, "producer") else True
    assert isinstance(loaded.proto.producer_name, str)
    bad = data.replace(node, b"\xff" * len(node), 1)
    (tmp_path / "n.onnx").write_bytes(bad)
    with pytest.raises(ModelLoadError, match="not valid UTF-8"):
        load_model(tmp_path / "n.onnx")


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, appended by hand (helpers re-parse and hit the limit)."""
    out, n = bytearray([number << 3 | 2]), len(payload)
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + bytes([n]) + payload


def test_nesting_deeper_than_the_parser_allows(tmp_path: Path) -> None:
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "leaf",
        [vi("x", TensorProto.FLOAT, [1])], [vi("y", TensorProto.FLOAT, [1])],
    ).SerializeToString()  # fmt: skip
    for _ in range(40):  # GraphProto.node=1, NodeProto.attribute=5, AttributeProto.g=6
        attr = onnx.AttributeProto(name="then_branch", type=onnx.AttributeProto.GRAPH)
        node = helper.make_node("If", ["c"], ["y"]).SerializeToString()
        node += _field(5, attr.SerializeToString() + _field(6, g))
        outer = helper.make_graph([], "g", [vi("c", TensorProto.BOOL, [])], [vi("y", 1, [1])])
        g = outer.SerializeToString() + _field(1, node)
    head = helper.make_model(helper.make_graph([], "m", [], [])).SerializeToString()
    model = onnx.ModelProto()
    model.ParseFromString(head)
    model.ClearField("graph")
    (tmp_path / "m.onnx").write_bytes(model.SerializeToString() + _field(7, g))
    with pytest.raises(ModelLoadError, match="nests subgraphs"):
        load_model(tmp_path / "m.onnx")


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    result: list[BaseException] = []
    t = threading.Thread(target=lambda: _catch(result, fifo), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "loading a FIFO blocked"
    assert isinstance(result[0], ModelLoadError) and "not a regular file" in str(result[0])
    with pytest.raises(ModelLoadError, match="not a regular file"):
        load_model("/dev/zero")


def _catch(out: list[BaseException], p: Path) -> None:
    try:
        load_model(p)
    except BaseException as exc:
        out.append(exc)


def _external(tmp_path: Path, length: int | None, file_bytes: int) -> Path:
    m = mlp()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": "w.bin"} | ({"length": str(length)} if length is not None else {})
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    with open(tmp_path / "w.bin", "wb") as fh:
        fh.truncate(file_bytes)  # sparse on disk: no real space used
    return _save(m, tmp_path / "ext.onnx")


def test_external_size_is_checked_before_reading(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has 6000000000 bytes, expected \d+"):
        load_model(_external(tmp_path, None, 6_000_000_000))
    with pytest.raises(ModelLoadError, match="declares 12 bytes"):
        load_model(_external(tmp_path, 12, 100))


@pytest.mark.parametrize("location", ["a\x00b.bin", "x" * 5000 + ".bin"])
def test_odd_external_locations(tmp_path: Path, location: str) -> None:
    m = mlp()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location
    with pytest.raises(ModelLoadError, match=r"NUL|cannot be used|not found"):
        load_model(_save(m, tmp_path / "m.onnx"))


def test_from_proto_validates_too() -> None:
    m = mlp()
    m.graph.initializer[0].raw_data = b"\0"
    with pytest.raises(ModelLoadError, match="holds 1 bytes"):
        from_proto(m)


def test_negative_input_dimension(tmp_path: Path) -> None:
    m = mlp()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -3  # -1 means dynamic
    _refused(m, tmp_path, "negative dimension -3")


def test_histogram_of_a_weight_spanning_the_float32_range() -> None:
    from bitlens.core.viewdata import histogram

    w = np.array([-3.0e38, 0.0, 1.0, 3.0e38], np.float32)
    edges, counts = histogram(w, bins=10)
    assert counts.sum() == 4 and edges[0] == pytest.approx(-3.0e38, rel=1e-6)
    big = np.array([-1.7e308, 1.7e308])
    edges, counts = histogram(big, bins=4)
    assert counts.sum() == 2 and np.isfinite(edges).all()


def test_reading_a_model_yields_between_chunks_so_the_window_can_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bitlens.core.model import loader

    monkeypatch.setattr(loader, "READ_CHUNK", 1024)
    p = _save(mlp(), tmp_path / "m.onnx")
    gen = loader.iter_load_model(p)
    steps = [next(gen) for _ in range(2)]
    assert steps[0].done == 1024 and steps[0].total == p.stat().st_size
    gen.close()  # cancelled mid-read: nothing raised, nothing left open
    model = loader.load_model(p)
    assert model.info.layers


def test_folding_a_weight_that_would_explode_is_skipped_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """x[1,2] @ Pad(Constant[2,2], pads=[0,0,6000,6000]): 144 MB from 16 bytes."""
    monkeypatch.setenv("BITLENS_MEMORY_BUDGET", "32M")
    const = numpy_helper.from_array(np.ones((2, 2), np.float32))
    pads = numpy_helper.from_array(np.array([0, 0, 6000, 6000], np.int64))
    g = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=const),
         helper.make_node("Constant", [], ["p"], value=pads),
         helper.make_node("Pad", ["c", "p"], ["w"]),
         helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6002])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6002])],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    loaded = from_proto(m)
    assert any("over the memory budget" in n for n in loaded.info.notes), loaded.info.notes
    assert [n.op_type for n in loaded.proto.graph.node] == ["Constant", "Constant", "Pad", "MatMul"]


@pytest.mark.parametrize("attrs", [[], ["value", "value_float"]])
def test_constant_node_without_exactly_one_value(tmp_path: Path, attrs: list[str]) -> None:
    m = opset12_constant_weights()
    node = next(n for n in m.graph.node if n.op_type == "Constant")
    kept = [a for a in node.attribute if a.name in attrs]
    del node.attribute[:]
    node.attribute.extend(kept)
    if "value_float" in attrs:
        node.attribute.append(helper.make_attribute("value_float", 1.0))
    _refused(m, tmp_path, "Constant node .* has (no value|2 values)")
