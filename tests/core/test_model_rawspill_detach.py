"""The parsed proto does not keep a second copy of the weights the loader wrote to its
scratch map (core/model/rawspill.detach, splice.py): every way the whole model is read
back (proto, whole, serialized, materialize, copy_proto, tensor_value, nbytes) gives what
the straightforward load gives, an export is byte-identical, and ONNX Runtime opens the
user's file only while it is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import export
from bitlens.core.formats import parse_format
from bitlens.core.model import rawspill
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from bitlens.core.report import inspect_model
from bitlens.core.results import drain
from tests import exported_shapes


def _load(path: Path, monkeypatch, *, spill: bool):
    # these weights are small: every float one is written to the map, or none is
    monkeypatch.setattr(rawspill, "RAW_SPILL_MIN_BYTES", 0 if spill else 1 << 62)
    return load_model(path)


def _saved(proto: onnx.ModelProto, tmp_path: Path, name: str = "model.onnx") -> Path:
    path = tmp_path / name
    onnx.save(proto, path)
    return path


def test_the_parsed_proto_refers_to_the_map_and_reads_back_as_loaded(tmp_path, monkeypatch):
    """x -> Conv "conv1" -> Relu -> Conv "conv2" -> y, weights w1 [8,3,3,3], w2 [4,8,1,1]."""
    path = _saved(exported_shapes.two_convs(3), tmp_path)
    plain = _load(path, monkeypatch, spill=False)
    model = _load(path, monkeypatch, spill=True)
    assert set(model._detached) == {"w1", "w2"}
    refs = [t for t in model.graph_proto.graph.initializer if t.name in ("w1", "w2")]
    assert all(not t.raw_data and t.data_location == onnx.TensorProto.EXTERNAL for t in refs)
    assert model.graph_proto.ByteSize() < plain.graph_proto.ByteSize()
    want = plain.graph_proto.SerializeToString()
    assert model.nbytes == plain.nbytes == len(want)
    assert model.serialized() == want  # spliced on the wire, no copy
    assert model.whole().SerializeToString() == want
    assert model.copy_proto().SerializeToString() == want
    for t in refs:
        np.testing.assert_array_equal(model.tensor_value(t), plain.weight(t.name))
        np.testing.assert_array_equal(model.weight(t.name), plain.weight(t.name))
    assert model.graph_proto.ByteSize() < len(want)  # whole() and the rest left it alone
    assert model.proto.SerializeToString() == want  # read in for good, as before
    assert not model.graph_proto.graph.initializer[0].external_data
    assert model.nbytes == len(want)


def test_an_export_needing_an_opset_upgrade_is_byte_identical(tmp_path, monkeypatch):
    """Opset 12 -> 13 (per-channel DequantizeLinear): the conversion reads the spliced
    bytes; the export and its records equal the straightforward load's."""
    path = _saved(exported_shapes.two_convs(3, opset=12), tmp_path)
    written = []
    for spill in (False, True):
        model = _load(path, monkeypatch, spill=spill)
        assert bool(model._detached) is spill
        engine = Engine(model, Dataset.random(model.info, n=4, seed=3, dims={"N": 1}))
        drain(engine.calibrate())
        out = tmp_path / f"export_{spill}.onnx"
        result = drain(export(engine, Plan.preset(model.info, "W8A8"), out))
        assert result.opset == 13
        written.append(out.read_bytes())
        assert model.graph_proto.ByteSize() < model.nbytes or not spill  # still left out
    assert written[0] == written[1]


def test_onnx_runtime_opens_the_file_only_while_it_is_unchanged(tmp_path, monkeypatch):
    path = _saved(exported_shapes.two_convs(3), tmp_path)
    model = _load(path, monkeypatch, spill=True)
    assert model.runnable() == str(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "saved again"
    again = model.runnable()
    assert isinstance(again, onnx.ModelProto)
    plain = _load(path, monkeypatch, spill=False)
    assert again.SerializeToString() == plain.graph_proto.SerializeToString()


def test_a_file_reached_through_a_link_keeps_its_weights_in_the_proto(tmp_path, monkeypatch):
    """A location naming the file would lead out of the link's folder: nothing detached."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").mkdir()
    real = _saved(exported_shapes.two_convs(3), tmp_path / "real")
    link = tmp_path / "link" / "model.onnx"
    link.symlink_to(real)
    model = _load(link, monkeypatch, spill=True)
    assert not model._detached
    assert {"w1", "w2"} <= {n for (_, n), v in model._cache.items() if isinstance(v, np.memmap)}
    assert model.runnable().SerializeToString() == model.graph_proto.SerializeToString()
    np.testing.assert_array_equal(
        model.weight("w1"),
        numpy_helper.to_array(onnx.load(real).graph.initializer[0]),
    )


def test_a_sparse_initializer_next_to_detached_weights_reads_as_before(tmp_path, monkeypatch):
    """x[1,6] @ W (sparse, W's values named "W") -> + b: a sparse tensor has no name of its
    own; asking whether it is a detached weight answered with an AttributeError."""
    from tests.fuzz.models import _sparse_model

    proto = _sparse_model()
    proto.graph.initializer.append(numpy_helper.from_array(np.ones(4, np.float32), "b"))
    proto.graph.output[0].name = "y0"
    proto.graph.node.append(onnx.helper.make_node("Add", ["y0_", "b"], ["y0"]))
    proto.graph.node[0].output[0] = "y0_"
    path = _saved(proto, tmp_path)
    plain = _load(path, monkeypatch, spill=False)
    model = _load(path, monkeypatch, spill=True)
    assert "b" in model._detached
    for w in (w for layer in plain.info.layers for w in layer.weights):
        np.testing.assert_array_equal(model.weight(w), plain.weight(w))
    sparse = model.graph_proto.graph.sparse_initializer[0]
    np.testing.assert_array_equal(
        model.tensor_value(sparse), plain.tensor_value(plain.graph_proto.graph.sparse_initializer[0])
    )
    fmt = [parse_format("int8 sym ch")]
    assert inspect_model(model, fmt) == inspect_model(plain, fmt)  # what `bitlens inspect` shows
    assert model.serialized() == plain.graph_proto.SerializeToString()
