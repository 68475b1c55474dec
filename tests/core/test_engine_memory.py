"""The engine's memory bounds (issue 11) change where values live, never the numbers."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from bitlens.core import limits
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, rewrite, weightspill
from bitlens.core.engine import reference as reference_module
from bitlens.core.engine import session as session_module
from bitlens.core.formats import sign
from bitlens.core.model.external import release_pages
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.shared_weights import one_per_group
from tests.core.test_engine_scale import deep_mlp, residual_two_outputs


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
    monkeypatch.setattr(reference_module, "REFERENCE_MIN", 0)  # this model's feeds are small
    monkeypatch.setattr(reference_module, "PREFIX_MIN", 0)
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
    # kept prefix values: 0.4 of a feed (reference.PREFIX_FEEDS) against 0.25 (REFERENCE_FEEDS)
    assert 3 * use["budget"] // 2 < default._prefix_values.limit <= 8 * use["budget"] // 5 + 2


def test_small_activations_are_kept_whole_up_to_the_floors(monkeypatch) -> None:
    """A model whose activations are small next to its weights keeps its whole reference
    and its cut values (without them every change re-ran the whole model)."""
    monkeypatch.setenv(limits.ENV_BUDGET, "1G")
    engine = _engine(None)
    plan = Plan.preset(engine.info, "W8A8")
    engine.evaluate(plan)
    use = engine.memory_use()
    assert use["budget"] == reference_module.REFERENCE_MIN and use["spilled"] == 0
    assert engine._prefix_values.limit == reference_module.PREFIX_MIN
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


def _plans_of(info) -> list[Plan]:
    base = Plan.preset(info, "W8A8")
    names = [la.name for la in info.layers]
    return [
        base,
        base.with_choices({names[1]: LayerChoice.of("int4 sym ch", "uint8 asym")}),
        base.with_choices({names[-1]: LayerChoice.of("int2 sym ch")}),
        Plan(info),
    ]


def test_giving_back_the_arena_changes_no_number(monkeypatch) -> None:
    """The arena gives back its free regions after each evaluation (the first also gives
    back the float reference's), before a sweep and after each of its layers (the RSS
    unknown here, the ArenaReleaser releases every time): the same errors, outputs and
    sweep as an engine that keeps the arena whole."""
    from bitlens.core.engine import arena_release

    loaded = from_proto(residual_two_outputs())
    data = Dataset.random(loaded.info, n=6, seed=3, dims={"N": 3})
    plans = _plans_of(loaded.info)
    released = []
    real = session_module.release_arena

    def counted() -> None:
        released.append(1)
        real()

    monkeypatch.setattr(arena_release, "release_arena", counted)
    # the RSS unknown: evaluations give the arena back every time (arena_release.py)
    monkeypatch.setattr(arena_release, "resident_bytes", lambda: None)
    lean = Engine(loaded, data, device="cpu")
    got = [lean.evaluate(p) for p in plans]
    got_sweep = list(lean.sweep(["int4 sym ch", "bin ch"]))
    got_out = lean.run_outputs(plans[1])
    swept = one_per_group(loaded.info, loaded.info.layer_names)  # readers of Ws: once
    assert len(released) >= 1 + len(plans) + len(swept)
    monkeypatch.setattr(arena_release, "release_arena", lambda: None)
    whole = Engine(loaded, data, device="cpu")
    assert [whole.evaluate(p) for p in plans] == got
    assert list(whole.sweep(["int4 sym ch", "bin ch"])) == got_sweep
    for name, values in whole.run_outputs(plans[1]).items():
        for a, b in zip(values, got_out[name], strict=True):
            np.testing.assert_array_equal(a, b)


def test_mapped_float_weights_are_the_decoded_ones_and_change_no_number(monkeypatch) -> None:
    """Float weights moved to a memory-mapped scratch file (weightspill.py) hold the very
    values decoded from the protobuf, and every result is the same as with decoded arrays;
    a weight two layers read (Ws) is moved once."""
    monkeypatch.setattr(weightspill, "SPILL_MIN_BYTES", 0)  # this model's weights are small
    proto = residual_two_outputs()
    mapped_model, plain_model = from_proto(proto), from_proto(proto)
    data = Dataset.random(mapped_model.info, n=6, seed=4, dims={"N": 3})
    plans = _plans_of(mapped_model.info)
    mapped = Engine(mapped_model, data, device="cpu")
    plain = Engine(plain_model, data, device="cpu")
    plain.map_float_weights = False
    again = _plans_of(plain_model.info)
    assert [mapped.evaluate(p) for p in plans] == [plain.evaluate(p) for p in again]
    fed = [w for la in mapped_model.info.layers for w in rewrite.fed_constants(la)]
    assert fed
    for w in fed:
        value = mapped_model.weight(w)
        want = numpy_helper.to_array(
            next(t for t in proto.graph.initializer if t.name == w.name)
        ).astype(value.dtype)
        np.testing.assert_array_equal(value, want)
        assert release_pages(value), f"{w.name} is not memory-mapped"
        assert not value.flags.writeable
        assert not release_pages(plain_model.weight(w))
    assert weightspill.spill_weights(mapped_model, fed) == 0  # moved already
