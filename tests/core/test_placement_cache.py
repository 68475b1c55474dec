"""The engine's placement cache (keyed by targets.placement_key) returns what
targets.placement computes for each plan."""

from __future__ import annotations

from bitlens.core import targets
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.builders import conv_chain
from tests.core.test_targets import silu_net


def test_cached_placements_equal_fresh_ones() -> None:
    for proto in (silu_net(), conv_chain("hswish", kernel=3)):
        loaded = from_proto(proto)
        engine = Engine(loaded, None, device="cpu")
        base = Plan.preset(loaded.info, "W8A8")
        plans = [base]
        for la in loaded.info.layers:
            for w, a in (
                ("int4 sym ch", "uint8 asym"),
                ("int2 sym ch", "uint8 asym"),
                ("int8 sym", "uint8 asym"),
                ("int8 sym ch", "int8 sym"),
                ("int8 sym ch", None),
            ):
                plans.append(base.with_choices({la.name: LayerChoice.of(w, a)}))
        plans += [base.with_target("none"), base.with_target("tensorrt"), Plan(loaded.info)]
        keys = set()
        for plan in plans + plans[::-1]:  # the second pass reads the cache
            keys.add(targets.placement_key(plan))
            assert engine.placement(plan) == targets.placement(
                plan, engine._attribute, engine.scalar
            )
        assert len(keys) < len(plans)  # plans share placements


def test_placement_key_ignores_weights_that_keep_the_integer_kernel() -> None:
    loaded = from_proto(silu_net())
    base = Plan.preset(loaded.info, "W8A8")
    name = loaded.info.layers[1].name
    per_tensor = base.with_choices({name: LayerChoice.of("int8 sym", "uint8 asym")})
    four = base.with_choices({name: LayerChoice.of("int4 sym ch", "uint8 asym")})
    bits3 = base.with_choices({name: LayerChoice.of("int3 sym ch", "uint8 asym")})
    # blocked weights have no integer kernel
    three = base.with_choices({name: LayerChoice.of("int3 sym blk16", "uint8 asym")})
    two = base.with_choices({name: LayerChoice.of("int2 sym blk16", "uint8 asym")})
    assert targets.placement_key(per_tensor) == targets.placement_key(base)
    assert targets.placement_key(four) == targets.placement_key(base)  # int4: a kernel too
    assert targets.placement_key(bits3) == targets.placement_key(base)  # and int3
    assert targets.placement_key(three) == targets.placement_key(two)
    assert targets.placement_key(two) != targets.placement_key(base)


def test_kept_stored_bytes_and_plan_hashes_equal_fresh_ones() -> None:
    from bitlens.core.weights import stored_bytes

    loaded = from_proto(silu_net())
    engine = Engine(loaded, None, device="cpu")
    base = Plan.preset(loaded.info, "W8A8")
    names = loaded.info.layer_names
    plans = [base, Plan.preset(loaded.info, "W4A8"), Plan(loaded.info)]
    plans += [base.with_choices({n: LayerChoice.of("int2 sym ch", "uint8 asym")}) for n in names]
    for plan in plans + plans:
        formats = tuple(plan[n].weight for n in names)
        assert engine._stored_bytes(formats) == stored_bytes(
            loaded.info.layers, {n: plan[n].weight for n in names}
        )
        fresh = hash((plan.target, tuple(sorted(plan.choices.items()))))
        assert hash(plan) == fresh == hash(Plan(loaded.info, dict(plan.choices), plan.target))
