"""Dynamic input dimensions: which need a size, suggested sizes, and weights-only evaluation
of a model opened with no data."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.dims import MissingDimension, concrete_shape, needed_dims, suggest_dims
from bitlens.core.engine import Engine
from bitlens.core.engine.weights_only import weight_evaluation
from bitlens.core.errors import EngineError
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.data_models import ocr_line, two_inputs_shared_dim
from tests.core.engine_models import _model


def _identity(shape: list, name: str = "x") -> onnx.ModelProto:
    g = helper.make_graph(
        [helper.make_node("Identity", [name], ["y"])],
        "identity",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    return _model(g)


@pytest.mark.parametrize(
    ("shape", "want"),
    [
        ([None, 3, 48, None], {"x:3": 48}),  # the missing side copies the fixed one
        (["N", 3, "h", "w"], {"h": 224, "w": 224}),
        (["N", "h", "w", 3], {"h": 224, "w": 224}),  # NHWC
        (["N", 64, 3], {}),
        (["N", "seq", 16], {"seq": 32}),
    ],
)
def test_suggested_sizes_from_the_layout(shape, want) -> None:
    info = from_proto(_identity(shape)).info
    assert suggest_dims(info) == want


def test_shared_name_is_one_dim_and_data_then_memory_fill_it() -> None:
    info = from_proto(two_inputs_shared_dim()).info
    (spec,) = needed_dims(info)
    assert spec.key == "seq" and spec.uses == (("a", 1), ("b", 1))
    assert suggest_dims(info, remembered={"seq": 7}) == {"seq": 7}
    feed = {"a": np.zeros((1, 11, 4)), "b": np.zeros((1, 11, 4))}
    assert suggest_dims(info, feed, remembered={"seq": 7}) == {"seq": 11}
    ds = Dataset.random(info, n=2, dims={"seq": 5})
    assert ds.samples[0]["a"].shape[1] == ds.samples[0]["b"].shape[1] == 5


def test_missing_dim_names_its_key() -> None:
    info = from_proto(ocr_line(width=None)).info
    with pytest.raises(MissingDimension) as err:
        concrete_shape(info.inputs[0], {})
    assert err.value.key == "x:3" and "axis 3" in str(err.value)
    assert concrete_shape(info.inputs[0], {"x:3": 9}) == (1, 1, 8, 9)


def test_engine_without_data_gives_the_same_weight_errors() -> None:
    model = from_proto(ocr_line())
    plan = Plan.uniform(model.info, "int4 sym ch", "uint8 asym")
    bare = Engine(model, None, device="cpu")
    weights_only = weight_evaluation(bare, plan)
    with pytest.raises(EngineError, match="no input data"):
        for _ in bare.prepare():
            pass
    full = Engine(model, Dataset.random(model.info, n=4, dims={"width": 6}), device="cpu")
    ev = full.evaluate(plan)
    for name, r in weights_only.layers.items():
        assert r.weight == ev.layers[name].weight and r.bytes_after == ev.layers[name].bytes_after
        assert r.local is None and r.accumulated is None
    assert weights_only.outputs == {} and weights_only.bytes_after == ev.bytes_after
