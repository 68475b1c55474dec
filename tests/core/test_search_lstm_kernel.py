"""The search's plans run an int8 LSTM as ONNX Runtime's DynamicQuantizeLSTM on ``ort-cpu``,
as the presets do (core/lstm_kernel.py), so a searched plan is not a slower W8A8: before,
the search built its choices without ``dynamic`` and its plans ran the LSTM float. Below the
kernel's crossover (core/lstm_kernel.py pays) the search, as the presets, keeps the float LSTM."""

from __future__ import annotations

import dataclasses

from bitlens.core.engine import Engine
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions
from bitlens.core.search.state import SearchState
from bitlens.core.targets import NONE, ORT_CPU
from tests import builders
from tests.core.export_models import random_feeds

INT8 = parse_format("int8 sym ch")
U8 = parse_format("uint8 asym")


def _engine(inp: int = 64, hidden: int = 128) -> Engine:
    """At 128 hidden x 64 inputs, the first size measured where the kernel ran faster."""
    model = from_proto(builders.lstm_recognizer(steps=4, inp=inp, hidden=hidden))
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    drain(engine.calibrate("minmax"))
    return engine


def test_search_plans_run_the_lstm_as_the_kernel_like_the_preset() -> None:
    engine = _engine()
    s = SearchState(engine, SearchOptions(Budget(size_ratio=0.5), target=ORT_CPU))
    plan = s.plan_for({"lstm": LayerChoice(INT8, U8), "head": LayerChoice(INT8, U8)})
    assert plan["lstm"].dynamic  # the kernel
    assert not plan["head"].dynamic  # a Gemm: static activations as before
    preset = Plan.preset(engine.info, "W8A8", target=ORT_CPU)
    assert plan["lstm"] == preset["lstm"]
    # weights the kernel cannot take (int4) keep the float LSTM on a static quantizer
    int4 = s.plan_for({"lstm": LayerChoice(parse_format("int4 sym ch"), U8)})
    assert not int4["lstm"].dynamic


def test_search_plans_keep_a_small_lstm_float_like_the_preset() -> None:
    """At 112 hidden x 64 inputs the kernel ran 0.97-1.02x the float LSTM's time (no faster):
    the search's int8 choice keeps the calibrated quantizer and ONNX's LSTM, as W8A8 does."""
    engine = _engine(hidden=112)
    s = SearchState(engine, SearchOptions(Budget(size_ratio=0.5), target=ORT_CPU))
    plan = s.plan_for({"lstm": LayerChoice(INT8, U8), "head": LayerChoice(INT8, U8)})
    assert not plan["lstm"].dynamic and plan["lstm"].activation == U8
    assert plan["lstm"] == Plan.preset(engine.info, "W8A8", target=ORT_CPU)["lstm"]


def test_a_pinned_lstm_choice_is_kept_and_other_targets_are_untouched() -> None:
    engine = _engine()
    pinned = LayerChoice(INT8, U8, dynamic=False)
    s = SearchState(engine, SearchOptions(Budget(size_ratio=0.5), pins={"lstm": pinned}))
    assert s.plan_for({"lstm": pinned})["lstm"] == pinned
    none = SearchState(engine, SearchOptions(Budget(size_ratio=0.5), target=NONE))
    got = none.plan_for({"lstm": LayerChoice(INT8, U8)})["lstm"]
    assert got == dataclasses.replace(got, dynamic=False)
