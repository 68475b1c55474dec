"""Plans: validation on construction, presets, JSON and ORT-overrides round trips."""

from __future__ import annotations

import json

import pytest

from bitlens.core.errors import PlanError
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import PRESETS, LayerChoice, Plan, activation_choices, weight_choices
from tests.core.engine_models import small_cnn


@pytest.fixture(scope="module")
def info():
    return from_proto(small_cnn()).info


def test_absent_layers_are_float_and_float_choices_are_dropped(info) -> None:
    plan = Plan(info, {"conv1": LayerChoice.of("int8 sym ch"), "conv2": LayerChoice()})
    assert plan["conv2"] == LayerChoice()
    assert set(plan.choices) == {"conv1"}
    assert list(plan) == list(info.layer_names) and len(plan) == 3


def test_unknown_layer_is_an_error_naming_it(info) -> None:
    with pytest.raises(PlanError, match="'Conv'"):
        Plan(info, {"Conv": LayerChoice.of("int8 sym")})


def test_impossible_activation_formats_are_refused(info) -> None:
    with pytest.raises(PlanError, match="cannot be blocked"):
        Plan(info, {"conv1": LayerChoice.of(None, "int8 sym blk4")})
    with pytest.raises(PlanError, match="static integer"):
        Plan(info, {"conv1": LayerChoice.of(None, "uint8 asym ch", dynamic=True)})
    with pytest.raises(PlanError, match="static integer"):
        Plan(info, {"conv1": LayerChoice.of(None, "fp8e4m3fn ch")})
    with pytest.raises(PlanError, match="integer or float"):
        Plan(info, {"conv1": LayerChoice.of(None, "nf4")})
    with pytest.raises(PlanError, match="dynamic"):
        Plan(info, {"conv1": LayerChoice.of(None, "fp16", dynamic=True)})
    with pytest.raises(PlanError, match="axis 5"):
        Plan(info, {"conv1": LayerChoice.of("int8 sym ch5")})


def test_edits_return_new_plans(info) -> None:
    a = Plan.preset(info, "W8A8")
    b = a.with_choices({"fc": LayerChoice.of("int4 sym ch", "uint8 asym")})
    assert a["fc"].weight == parse_format("int8 sym ch")
    assert b["fc"].weight == parse_format("int4 sym ch")
    assert a != b and a == Plan.preset(info, "W8A8")


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_cover_every_layer_and_round_trip_as_json(info, preset: str) -> None:
    plan = Plan.preset(info, preset)
    assert set(plan.choices) == set(info.layer_names)
    again = Plan.from_json(info, plan.to_json())
    assert again == plan


def test_preset_on_some_layers(info) -> None:
    plan = Plan.preset(info, "W4A16", layers=["conv2"])
    assert set(plan.choices) == {"conv2"}
    with pytest.raises(PlanError, match="unknown preset"):
        Plan.preset(info, "W3A3")


def test_json_errors_are_clear(info) -> None:
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.from_json(info, "{")
    with pytest.raises(PlanError, match="not a Bitlens plan"):
        Plan.from_json(info, "{}")
    with pytest.raises(PlanError, match="version 99"):
        Plan.from_json(info, json.dumps({"bitlens_plan": 99, "layers": {}}))
    bad = {"bitlens_plan": 1, "layers": {"conv1": {"weight": "int9 sym"}}}
    with pytest.raises(PlanError, match="conv1"):
        Plan.from_json(info, json.dumps(bad))


def test_dynamic_flag_round_trips(info) -> None:
    plan = Plan(info, {"conv2": LayerChoice.of("int8 sym ch", "uint8 asym", dynamic=True)})
    assert Plan.from_json(info, plan.to_json())["conv2"].dynamic


def test_ort_overrides_round_trip(info) -> None:
    plan = Plan(
        info,
        {
            "conv1": LayerChoice.of("int8 sym narrow ch", "uint8 asym"),
            "conv2": LayerChoice.of("int4 sym ch", "int16 sym narrow"),
            "fc": LayerChoice.of("nf4 blk16", "uint8 asym"),
        },
    )
    ov = plan.to_ort_overrides()
    assert ov["W1"] == [{"quant_type": "QInt8", "symmetric": True, "axis": 0}]
    assert ov["W2"] == [{"quant_type": "QInt4", "symmetric": True, "axis": 0}]
    assert ov["x"] == [{"quant_type": "QUInt8", "symmetric": False}]
    assert "W3" not in ov  # nf4 has no ORT equivalent
    assert plan.ort_unrepresentable() == ["fc: weight nf4 blk16 (no ONNX Runtime quant_type)"]
    back = Plan.from_ort_overrides(info, json.loads(json.dumps(ov)))
    assert back["conv1"] == LayerChoice.of("int8 sym narrow ch0", "uint8 asym")
    assert back["conv2"] == LayerChoice.of("int4 sym ch0", "int16 sym narrow")
    with pytest.raises(PlanError, match="nosuch"):
        Plan.from_ort_overrides(info, {"nosuch": [{"quant_type": "QInt8"}]})


def test_offered_choices(info) -> None:
    conv = info.layer("conv1")
    assert "int4 sym blk32" in weight_choices(conv) and "bin ch" in weight_choices(conv)
    assert "uint8 asym" in activation_choices(conv)
    for name in weight_choices(conv):
        Plan(info, {"conv1": LayerChoice.of(name)})  # every offered weight format is valid
    for name in activation_choices(conv):
        Plan(info, {"conv1": LayerChoice.of(None, name)})
