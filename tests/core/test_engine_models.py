"""The engine on the models real exporters produce (subgraphs, Constant weights, states)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import PlanError
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests import builders


def _engine(proto, feeds: list[dict[str, np.ndarray]]) -> Engine:
    model = from_proto(proto)
    data = Dataset(tuple(feeds), None, (0,), tuple(range(1, len(feeds))), "test")
    return Engine(model, data, device="cpu")


def test_weights_inside_if_branches_are_simulated() -> None:
    proto = builders.lstm_in_if()
    feeds = [builders.random_feeds(proto, seed=s) for s in range(3)]
    engine = _engine(proto, feeds)
    then = next(la for la in engine.info.layers if "then" in la.graph_path)
    ev = engine.evaluate(Plan(engine.info, {then.name: LayerChoice.of("int4 sym ch")}))
    assert ev.layers[then.name].weight.sqnr_db < 30
    assert ev.outputs["h"].error.sqnr_db < 40  # cond is True: the then-branch ran quantized
    assert ev.layers[then.name].accumulated is None  # values inside a subgraph cannot be fetched
    with pytest.raises(PlanError, match="If/Loop/Scan"):
        Plan(engine.info, {then.name: LayerChoice.of(None, "uint8 asym")})


def test_outer_scope_weights_read_by_a_loop_body() -> None:
    proto = builders.loop_with_matmul()
    feeds = [builders.random_feeds(proto, seed=s) for s in range(3)]
    engine = _engine(proto, feeds)
    body = next(la for la in engine.info.layers if la.graph_path)
    ev = engine.evaluate(Plan(engine.info, {body.name: LayerChoice.of("int2 sym ch")}))
    out = next(iter(ev.outputs.values()))
    assert out.error.sqnr_db < 30


@pytest.mark.parametrize(
    "name", ["opset12_constant_weights", "fp64_gemm", "nhwc_conv", "stateful_gru", "multi_input"]
)
def test_presets_evaluate_on_exporter_shapes(name: str) -> None:
    proto = getattr(builders, name)()
    feeds = [builders.random_feeds(proto, seed=s) for s in range(3)]
    engine = _engine(proto, feeds)
    float_ev = engine.evaluate(Plan(engine.info))
    assert all(o.error.sqnr_db == math.inf for o in float_ev.outputs.values())
    ev = engine.evaluate(Plan.uniform(engine.info, "int4 sym ch"))
    assert all(o.error.sqnr_db < math.inf for o in ev.outputs.values())
    assert ev.bytes_after < ev.bytes_before
