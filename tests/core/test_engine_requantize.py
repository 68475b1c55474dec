"""Layer quantizers that repeat the target's quantizer are left out of the simulation graph
(engine/requantize.py) and the engine's numbers stay exactly those of the graph with them."""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, requantize
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.builders import conv_chain, random_feeds
from tests.core.engine_models import small_cnn
from tests.core.test_targets import silu_net


def _plans(info) -> list[Plan]:
    """W8A8 and variants that keep, change or drop the target's quantizers around a layer:
    another activation format (int8 sym: not the target's), 4-bit weights (no integer
    kernel), per-channel and dynamic activations, SmoothQuant, target "none"."""
    base = Plan.preset(info, "W8A8")
    names = [la.name for la in info.layers]
    mid = names[len(names) // 2]
    return [
        base,
        base.with_choices({mid: LayerChoice.of("int8 sym ch", "int8 sym")}),
        base.with_choices({names[0]: LayerChoice.of("int4 sym ch", "uint8 asym")}),
        base.with_choices({mid: LayerChoice.of("int8 sym ch", "uint8 asym", dynamic=True)}),
        base.with_choices({mid: LayerChoice.of("int8 sym ch", "uint8 asym", recovery="smoothquant")}),
        base.with_target("none"),
        Plan.preset(info, "W4A8"),
    ]


def _hswish():
    model = conv_chain("hswish", kernel=3)
    feeds = [random_feeds(model, seed=s) for s in range(3)]
    for f in feeds:
        f["x"] = f["x"] * 3  # past -3 and +3: the Div by 6 rescales a quantized tensor
    return model, Dataset(tuple(feeds), source="random feeds")


@pytest.mark.parametrize("case", ["cnn", "target_quantizers", "hswish"])
def test_leaving_out_repeated_quantizers_gives_the_same_numbers(case: str) -> None:
    if case == "hswish":
        proto, data = _hswish()
        loaded = from_proto(proto)
    else:
        loaded = from_proto(small_cnn() if case == "cnn" else silu_net())
        data = Dataset.random(loaded.info, n=4, seed=3, dims={"N": 2})
    plans = _plans(loaded.info)
    fast = Engine(loaded, data, device="cpu")
    slow = Engine(loaded, data, device="cpu")
    slow.skip_redundant = False
    skipped = [
        requantize.redundant_quantizers(loaded.info, p.choices, fast.placement(p)) for p in plans
    ]
    assert skipped[0], "W8A8 under ort-cpu repeats no target quantizer"
    assert not skipped[5], "target none has no quantizers to repeat"
    for plan in plans:
        assert fast.evaluate(plan) == slow.evaluate(plan)
        got, want = fast.run_outputs(plan), slow.run_outputs(plan)
        for name in want:
            for g, w in zip(got[name], want[name], strict=True):
                np.testing.assert_array_equal(g, w)
    # and the graph run really is smaller
    sim_fast, _ = fast.simulation(plans[0])
    sim_slow, _ = slow.simulation(plans[0])
    assert len(sim_fast.model.graph.node) < len(sim_slow.model.graph.node)


def test_a_layer_in_another_format_keeps_its_quantizer() -> None:
    loaded = from_proto(small_cnn())
    data = Dataset.random(loaded.info, n=2, seed=3, dims={"N": 2})
    engine = Engine(loaded, data, device="cpu")
    base = Plan.preset(loaded.info, "W8A8")
    names = [la.name for la in loaded.info.layers]
    changed = base.with_choices({names[1]: LayerChoice.of("int8 sym ch", "int8 sym")})
    for plan, kept in ((base, False), (changed, True)):
        pairs = requantize.redundant_quantizers(loaded.info, plan.choices, engine.placement(plan))
        assert (names[1] not in {layer for layer, _ in pairs}) is kept
