"""The local graphs find each layer's node and constant from one index of the graph's
nodes (rewrite.INDEXED_LOCAL): the same graphs as a scan of the nodes per lookup."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, rewrite
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.engine_models import small_cnn


def constant_bias_cnn() -> onnx.ModelProto:
    """small_cnn whose second conv adds a bias written as a Constant node (paddle2onnx
    writes PP-OCRv4 rec's weights and biases so), placed after other nodes."""
    model = small_cnn()
    graph = model.graph
    conv2 = next(n for n in graph.node if n.name == "conv2")
    conv2.input.append("b2")
    value = numpy_helper.from_array(np.linspace(-0.2, 0.3, 16, dtype=np.float32), "b2_value")
    graph.node.insert(1, helper.make_node("Constant", [], ["b2"], name="b2", value=value))
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def calibrated():
    loaded = from_proto(constant_bias_cnn())
    engine = Engine(loaded, Dataset.random(loaded.info, n=4, seed=5), device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    yield loaded, engine
    engine.close()


def _local_graphs(loaded, engine, indexed: bool, monkeypatch) -> list[bytes]:
    monkeypatch.setattr(rewrite, "INDEXED_LOCAL", indexed)
    engine.__dict__.pop("_producers", None)  # the index, built again on first use
    plan = Plan.preset(loaded.info, "W8A8")
    kinds = engine._kinds(plan)
    types = engine._ensure_ref().types
    names = loaded.info.layer_names
    out = []
    for layers in (None, names, names[1:], [names[1]]):
        built = rewrite.build_local(
            loaded.graph_proto, loaded.info, kinds, types, engine._constant, layers
        )
        out.append(built.SerializeToString())
    assert ("_producers" in engine.__dict__) is indexed  # the path under test ran
    return out


def test_local_graphs_from_the_index_equal_those_of_a_scan_per_layer(
    calibrated, monkeypatch
) -> None:
    loaded, engine = calibrated
    indexed = _local_graphs(loaded, engine, True, monkeypatch)
    scanned = _local_graphs(loaded, engine, False, monkeypatch)
    assert indexed == scanned
    # the Constant node's bias is in the local graphs, read through the index
    local = onnx.load_from_string(indexed[0])
    (b2,) = [t for t in local.graph.initializer if t.name == "b2"]
    np.testing.assert_array_equal(
        numpy_helper.to_array(b2), np.linspace(-0.2, 0.3, 16, dtype=np.float32)
    )


def test_local_errors_from_the_index_equal_those_of_a_scan_per_layer(monkeypatch) -> None:
    loaded = from_proto(constant_bias_cnn())
    data = Dataset.random(loaded.info, n=4, seed=6)
    plan = Plan.preset(loaded.info, "W8A8")
    results = []
    for indexed in (True, False):
        monkeypatch.setattr(rewrite, "INDEXED_LOCAL", indexed)
        engine = Engine(loaded, data, device="cpu")
        for _ in engine.calibrate("minmax"):
            pass
        results.append({n: r.local for n, r in engine.evaluate(plan).layers.items()})
        engine.close()
    assert results[0] == results[1]
    assert all(v is not None for v in results[0].values())
