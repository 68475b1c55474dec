"""bitlens.core.model.wire: the main-graph initializers' raw data lengths read from a
file's bytes are those of the proto protobuf parses from them (the loader's length check
reads them instead of copying every weight's bytes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.errors import ModelLoadError
from bitlens.core.model import wire
from bitlens.core.model.loader import load_model
from tests.builders import conv_net


def _expected(data: bytes) -> list[int | None]:
    proto = onnx.ModelProto()
    proto.ParseFromString(data)
    return [len(t.raw_data) if t.HasField("raw_data") else None for t in proto.graph.initializer]


def _mixed() -> onnx.ModelProto:
    """Raw and typed-field initializers, an empty one, an int64 one."""
    model = conv_net()
    g = model.graph
    g.initializer.append(helper.make_tensor("typed", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]))
    g.initializer.append(numpy_helper.from_array(np.zeros((0, 4), np.float32), "empty"))
    g.initializer.append(numpy_helper.from_array(np.arange(7, dtype=np.int64), "ints"))
    return model


@pytest.mark.parametrize("build", [conv_net, _mixed], ids=["conv", "mixed"])
def test_lengths_are_those_of_the_parsed_proto(build) -> None:
    data = build().SerializeToString()
    assert wire.initializer_raw_lengths(data) == _expected(data)
    assert None in _expected(_mixed().SerializeToString())  # the typed one has no raw data


def test_spans_hold_the_bytes_protobuf_parses_as_raw_data() -> None:
    data = _mixed().SerializeToString()
    proto = onnx.ModelProto()
    proto.ParseFromString(data)
    spans = wire.initializer_raw_spans(data)
    assert spans is not None and len(spans) == len(proto.graph.initializer)
    for t, span in zip(proto.graph.initializer, spans, strict=True):
        assert (span is None) == (not t.HasField("raw_data"))
        assert span is None or data[span[0] : span[1]] == t.raw_data


def test_a_graph_met_twice_is_merged_as_protobuf_merges_it() -> None:
    """Two serialized models one after the other parse as one model whose graph has the
    initializers of both, in order."""
    first = conv_net().SerializeToString()
    other = _mixed()
    other.graph.initializer[0].raw_data = b"\0" * 12
    data = first + other.SerializeToString()
    assert wire.initializer_raw_lengths(data) == _expected(data)
    assert len(_expected(data)) == 2 * len(conv_net().graph.initializer) + 3


@pytest.mark.parametrize("cut", [1, 7, 100])
def test_truncated_or_malformed_bytes_give_none(cut: int) -> None:
    data = conv_net().SerializeToString()
    assert wire.initializer_raw_lengths(data[:-cut]) is None
    assert wire.initializer_raw_lengths(b"\x3a\xff") is None  # graph field longer than the file
    assert wire.initializer_raw_lengths(b"\x3b") is None  # a group: not in onnx.proto


def test_a_walk_over_too_many_fields_gives_up(monkeypatch) -> None:
    data = conv_net().SerializeToString()
    monkeypatch.setattr(wire, "FIELDS_MIN", 3)
    assert wire.initializer_raw_lengths(data) is None


def test_a_short_raw_data_is_refused_with_the_lengths_read_from_the_file(tmp_path: Path) -> None:
    """The loader's check reads the length from the file's bytes: same message."""
    model = conv_net()
    t = model.graph.initializer[0]
    t.raw_data = t.raw_data[:-4]
    path = tmp_path / "short.onnx"
    path.write_bytes(model.SerializeToString())
    want = len(t.raw_data)
    with pytest.raises(ModelLoadError, match=f"holds {want} bytes of data"):
        load_model(path)
