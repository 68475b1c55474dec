"""Large float weights written at load from the file's bytes (core/model/rawspill.py): the
values are those protobuf decodes, every engine number is the same as with decoded
weights, and a weight the loader rewrote (a folded BatchNormalization, an opset upgrade)
is never taken from the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model import rawspill
from bitlens.core.model.external import release_pages
from bitlens.core.model.loader import from_proto, load_model
from bitlens.core.model.wire import initializer_raw_spans
from bitlens.core.plan import LayerChoice, Plan
from tests import builders, exported_shapes
from tests.core.test_bn_fold import conv_bn_net
from tests.core.test_engine_scale import residual_two_outputs


@pytest.fixture(autouse=True)
def _every_size(monkeypatch) -> None:
    monkeypatch.setattr(rawspill, "RAW_SPILL_MIN_BYTES", 0)  # these models' weights are small


def _saved(proto: onnx.ModelProto, tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    onnx.save(proto, path)
    return path


def _mapped_at_load(model) -> set[str]:
    return {name for (_, name), v in model._cache.items() if isinstance(v, np.memmap)}


def test_weights_written_from_the_file_are_its_values_and_change_no_number(tmp_path) -> None:
    proto = residual_two_outputs()
    loaded = load_model(_saved(proto, tmp_path))
    floats = {t.name: t for t in proto.graph.initializer if t.data_type == TensorProto.FLOAT}
    assert _mapped_at_load(loaded) == set(floats)
    for name, t in floats.items():
        value, want = loaded.weight(name), numpy_helper.to_array(t)
        assert value.dtype == want.dtype and value.shape == want.shape
        np.testing.assert_array_equal(value, want)
        assert not value.flags.writeable
        assert release_pages(value), f"{name} is not memory-mapped"
    decoded = from_proto(proto)
    assert not _mapped_at_load(decoded)
    data = Dataset.random(loaded.info, n=6, seed=4, dims={"N": 3})
    names = loaded.info.layer_names
    plans = [
        Plan.preset(info, "W8A8").with_choices({names[1]: LayerChoice.of("int4 sym ch")})
        for info in (loaded.info, decoded.info)
    ]
    fast = Engine(loaded, data, device="cpu")
    plain = Engine(decoded, data, device="cpu")
    plain.map_float_weights = False  # the straightforward way: decoded arrays fed
    assert fast.evaluate(plans[0]) == plain.evaluate(plans[1])
    assert list(fast.sweep(["int4 sym ch"], names[:2])) == list(
        plain.sweep(["int4 sym ch"], names[:2])
    )


def test_float64_weights_are_written_and_other_types_decoded(tmp_path) -> None:
    """fp64 stays fp64 (as weight() returns it); fp16 (widened by weight()), typed
    float_data fields and names defined twice are left to the decoder."""
    proto = builders.fp64_gemm()
    g = proto.graph
    g.initializer.append(numpy_helper.from_array(np.ones((4, 4), np.float16), "half"))
    g.initializer.append(helper.make_tensor("typed", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]))
    loaded = load_model(_saved(proto, tmp_path))
    assert _mapped_at_load(loaded) == {"w", "b"}
    assert loaded.weight("w").dtype == np.float64
    np.testing.assert_array_equal(loaded.weight("w"), numpy_helper.to_array(g.initializer[0]))
    twice = onnx.GraphProto()
    twice.CopyFrom(g)
    twice.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "typed"))
    data = onnx.ModelProto(graph=twice).SerializeToString()
    spilled = rawspill.spill_raw(data, twice, initializer_raw_spans(data))
    assert set(spilled) == {"w", "b"}  # "typed" twice, "half" fp16


def test_a_weight_the_loader_rewrote_is_not_read_from_the_file(tmp_path) -> None:
    """Folded BatchNormalizations give their Conv new weight and bias values: those are the
    folded ones, not the file's bytes written at load."""
    proto, arrays = conv_bn_net()
    path = _saved(proto, tmp_path)
    unfolded = load_model(path, fold_bn=False)
    assert {"w0", "c0b", "w1"} <= _mapped_at_load(unfolded)
    folded = load_model(path)
    assert folded.bn_folded == 2
    assert not {"w0", "c0b", "w1"} & _mapped_at_load(folded)
    for name in ("w0", "w1"):
        t = next(t for t in folded.graph_proto.graph.initializer if t.name == name)
        np.testing.assert_array_equal(folded.weight(name), numpy_helper.to_array(t))
        assert not np.array_equal(folded.weight(name), arrays[name])  # really rewritten


def test_an_upgraded_opset_takes_nothing_from_the_file(tmp_path) -> None:
    proto = exported_shapes.two_convs(3, opset=9, crop=True)
    loaded = load_model(_saved(proto, tmp_path))
    assert any("raised to 11" in n for n in loaded.info.notes)
    assert not _mapped_at_load(loaded)
    assert _mapped_at_load(load_model(_saved(exported_shapes.two_convs(3), tmp_path)))
