"""The engine's memory bounds (issue 11) change where values live, never the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core import limits
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.engine import engine as engine_module
from bitlens.core.formats import sign
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.test_engine_scale import deep_mlp


def _engine(budget: int | None, loaded=None) -> Engine:
    loaded = loaded or from_proto(deep_mlp(6, 24))
    rng = np.random.default_rng(2)
    samples = tuple({"x": rng.standard_normal((5, 24)).astype(np.float32)} for _ in range(6))
    return Engine(
        loaded,
        Dataset(samples, calibration=(0, 1, 2), evaluation=(3, 4, 5)),
        device="cpu",
        memory_budget=budget,
    )


def test_the_default_budget_keeps_one_feed_in_memory_evaluation_feeds_first(
    monkeypatch,
) -> None:
    monkeypatch.setenv(limits.ENV_BUDGET, "1G")  # the process budget does not bind here
    monkeypatch.setattr(engine_module, "REFERENCE_MIN", 0)  # this model's feeds are small
    monkeypatch.setattr(engine_module, "PREFIX_MIN", 0)
    default = _engine(None)
    whole = _engine(1 << 30, default.model)
    plan = Plan.preset(default.info, "W8A8")
    changed = plan.with_choices({"mm3": LayerChoice.of("int2 sym ch", "uint8 asym")})
    assert default.evaluate(plan) == whole.evaluate(plan)
    assert default.evaluate(changed) == whole.evaluate(changed)
    use, all_kept = default.memory_use(), whole.memory_use()
    assert all_kept["spilled"] == 0
    per_feed = all_kept["in_memory"] // 6  # every feed of this model keeps the same tensors
    # a quarter of an evaluation feed's values (a calibration feed keeps fewer)
    assert per_feed // 4 < use["budget"] < per_feed // 2
    assert use["in_memory"] <= use["budget"] and use["spilled"] > 0
    assert use["in_memory"] + use["spilled"] == all_kept["in_memory"]
    # what stays in memory belongs to the evaluation feeds, which every evaluation reads
    assert {i for _, i in default._store._ram} <= set(default.data.evaluation)
    assert 2 * use["budget"] < default._prefix_values.limit <= 3 * use["budget"] + 3


def test_small_activations_are_kept_whole_up_to_the_floors(monkeypatch) -> None:
    """A model whose activations are small next to its weights keeps its whole reference
    and its cut values (without them every change re-ran the whole model)."""
    monkeypatch.setenv(limits.ENV_BUDGET, "1G")
    engine = _engine(None)
    plan = Plan.preset(engine.info, "W8A8")
    engine.evaluate(plan)
    use = engine.memory_use()
    assert use["budget"] == engine_module.REFERENCE_MIN and use["spilled"] == 0
    assert engine._prefix_values.limit == engine_module.PREFIX_MIN
    changed = plan.with_choices({"mm5": LayerChoice.of("int4 sym ch", "uint8 asym")})
    assert engine.evaluate(changed) == _engine(1 << 30, engine.model).evaluate(changed)
    assert len(engine._tails) == 1  # the change ran from its cut, not the whole graph


@pytest.mark.parametrize("shape", [(37, 11), (5, 300001), (1, 9)])
def test_binary_alpha_in_blocks_equals_the_whole_float64_mean(monkeypatch, shape) -> None:
    monkeypatch.setattr(sign, "_BLOCK_ELEMENTS", 64)  # many blocks, one row per block
    rng = np.random.default_rng(5)
    groups = (rng.standard_normal(shape) * rng.uniform(0.01, 5, (shape[0], 1))).astype(np.float32)
    want = np.mean(np.abs(groups.astype(np.float64)), axis=1).astype(np.float32)
    np.testing.assert_array_equal(sign.binary_alpha(groups), want)
    monkeypatch.setattr(sign, "_BLOCK_ELEMENTS", 2 * shape[1] + 1)  # two rows per block
    np.testing.assert_array_equal(sign.binary_alpha(groups), want)
