"""Plan A/B and model-against-model comparisons (core/compare.py), checked against float64
numpy computed here, on models built in code."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bitlens.core.compare import (
    compare_evaluations,
    compare_models,
    delta_db,
    render_model_comparison,
    render_plan_comparison,
    verdict,
)
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.engine_models import small_cnn


def calibrated_cnn(seed: int = 1) -> Engine:
    """The small CNN on 6 random samples, calibrated (min-max)."""
    model = from_proto(small_cnn())
    e = Engine(model, Dataset.random(model.info, n=6, seed=seed), device="cpu")
    for _ in e.calibrate("minmax"):
        pass
    return e


@pytest.fixture(scope="module")
def engine():
    return calibrated_cnn()


def test_delta_and_verdict_rules() -> None:
    assert delta_db(20.0, 25.0) == 5.0 and verdict(5.0) == "better"
    assert verdict(-1.0) == "worse" and verdict(0.01) == "same" and verdict(None) == ""
    assert delta_db(math.inf, math.inf) == 0.0  # both exact: the same
    assert delta_db(math.inf, 30.0) == -math.inf  # exact before, not any more: worse
    assert delta_db(None, 3.0) is None
    assert verdict(-100, higher_is_better=False) == "better"  # bytes: fewer is better


def test_plan_comparison_reads_both_evaluations(engine) -> None:
    info = engine.info
    a = Plan.preset(info, "W8A8")
    b = a.with_choices({"conv2": LayerChoice(parse_format("int2 sym ch"), a["conv2"].activation)})
    ev_a, ev_b = engine.evaluate(a), engine.evaluate(b)
    c = compare_evaluations(a, ev_a, b, ev_b)
    assert c.changed == ("conv2",)
    d = c.layer("conv2")
    # the deltas are exactly the two evaluations' numbers, subtracted
    assert d.delta_db("weight") == pytest.approx(
        ev_b.layers["conv2"].weight.sqnr_db - ev_a.layers["conv2"].weight.sqnr_db
    )
    assert d.delta_db("weight") < 0 and verdict(d.delta_db("weight")) == "worse"
    assert d.delta_bytes == ev_b.layers["conv2"].bytes_after - ev_a.layers["conv2"].bytes_after < 0
    assert c.layer("conv1").delta_db("weight") == 0.0 and not c.layer("conv1").changed
    assert c.delta_bytes == ev_b.bytes_after - ev_a.bytes_after
    (out,) = c.outputs
    assert out.delta_db == pytest.approx(
        ev_b.outputs["y"].error.sqnr_db - ev_a.outputs["y"].error.sqnr_db
    )
    text = render_plan_comparison(c)
    assert "* conv2" in text and "int2 sym ch" in text and "output y: SQNR A" in text
    d2 = c.to_dict()
    row = next(r for r in d2["layers"] if r["name"] == "conv2")
    assert row["changed"] and row["delta_bytes"] < 0


def test_float_layer_against_quantized_counts_float_as_exact(engine) -> None:
    info = engine.info
    a = Plan(info)  # float
    b = Plan.preset(info, "W4A8")
    c = compare_evaluations(a, engine.evaluate(a), b, engine.evaluate(b))
    assert c.layer("fc").delta_db("weight") == -math.inf
    assert verdict(c.layer("fc").delta_db("weight")) == "worse"


def _tweaked(proto: onnx.ModelProto, scale: float, drop_fc: bool = False) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for i, t in enumerate(m.graph.initializer):
        if t.name == "W2":
            w = numpy_helper.to_array(t) * scale
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(w.astype(np.float32), "W2"))
    if drop_fc:
        m.graph.node[-1].name = "classifier"
    return m


def test_model_comparison_matches_layers_by_name() -> None:
    base = small_cnn()
    a = from_proto(base)
    b = from_proto(_tweaked(base, 1.01, drop_fc=True))
    plan = Plan.preset(a.info, "W4A8")
    c = compare_models(a, b, plan)
    assert [d.name for d in c.layers] == ["conv1", "conv2"]
    assert c.only_a == ("fc",) and c.only_b == ("classifier",)
    conv1, conv2 = c.layers
    assert conv1.identical and conv1.diff.sqnr_db == math.inf
    w2 = numpy_helper.to_array(next(t for t in base.graph.initializer if t.name == "W2"))
    w2b = (w2 * 1.01).astype(np.float32).astype(np.float64)  # as _tweaked stores it
    w2 = w2.astype(np.float64)
    want = 10 * math.log10(np.sum(w2**2) / np.sum((w2 - w2b) ** 2))
    assert conv2.diff.sqnr_db == pytest.approx(want, rel=1e-9)
    assert conv2.diff.rel_l2 == pytest.approx(np.linalg.norm(w2 - w2b) / np.linalg.norm(w2))
    # the plan's format on each model's weights; a uniform rescale keeps the int4 SQNR
    assert conv2.format == "int4 sym ch" and conv2.sqnr_a == pytest.approx(conv2.sqnr_b, abs=0.01)
    text = render_model_comparison(c)
    assert "1 layers only in the model: fc" in text and "only in the other: classifier" in text
    assert c.to_dict()["only_in_b"] == ["classifier"]


def test_model_comparison_reports_shape_changes() -> None:
    base = small_cnn()
    other = onnx.ModelProto()
    other.CopyFrom(base)
    for i, t in enumerate(other.graph.initializer):
        if t.name == "W3":  # another head: 10 -> 10 classes but a different weight layout
            w = numpy_helper.to_array(t)
            other.graph.initializer[i].CopyFrom(numpy_helper.from_array(w.T.copy(), "W3"))
            other.graph.node[-1].attribute[0].i = 0  # transB=0 keeps the graph valid
    c = compare_models(from_proto(base), from_proto(other))
    fc = next(d for d in c.layers if d.name == "fc")
    assert not fc.same_shape and fc.diff is None
    assert "10x16 vs 16x10" in render_model_comparison(c)
