"""The open path's faster ways (issue 11: open + calibrate + first evaluation) give the
numbers of the straightforward ones."""

from __future__ import annotations

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, weightfeeds
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.builders import conv_net
from tests.core.test_engine_scale import deep_mlp


def _plans(info) -> list[Plan]:
    w8a8 = Plan.preset(info, "W8A8")
    first = info.layer_names[0]
    return [
        w8a8,
        Plan.preset(info, "W4A8"),
        w8a8.with_choices({first: LayerChoice.of("bin ch", "uint8 asym")}),
    ]


def test_weights_quantized_two_at_a_time_equal_those_quantized_in_turn(monkeypatch) -> None:
    for build in (lambda: deep_mlp(6), conv_net):
        loaded = from_proto(build())
        data = Dataset.random(loaded.info, n=4, seed=2, dims={"N": 2})
        threads: list[str] = []
        real = weightfeeds.quantize_weight

        def spy(*a, **k):
            import threading

            threads.append(threading.current_thread().name)
            return real(*a, **k)

        monkeypatch.setattr(weightfeeds, "quantize_weight", spy)
        two = Engine(loaded, data, device="cpu")
        got = [two.evaluate(p) for p in _plans(loaded.info)]
        assert any(t.startswith("bitlens-q") for t in threads)  # the pool quantized
        monkeypatch.setattr(weightfeeds, "QUANTIZE_WORKERS", 1)
        one = Engine(loaded, data, device="cpu")
        assert [one.evaluate(p) for p in _plans(loaded.info)] == got
        assert list(one._wcache) == list(two._wcache)  # cached in the same order
        for key, q in one._wcache.items():
            np.testing.assert_array_equal(two._wcache[key].values, q.values)
            np.testing.assert_array_equal(two._wcache[key].q.codes, q.q.codes)
        monkeypatch.undo()
