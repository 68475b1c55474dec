"""Where W8A8's predicted saving over float is marginal (core/search/latency.py MARGINAL), a
default size search also runs the weights-only search and keeps the better plan on the
held-back feeds, and its steering line says so (core/search/runner.py).

Before, the default limit (``--max-latency half``) on rapidocr-det (PP-OCRv4's DBNet, W8A8
predicted at x0.88 of float, measured 0.93-1.05x) locked 17 of 62 layers on integer kernels
with 8-bit inputs and returned a plan with 8-bit activations that lost to W8A8 on held-out
pages; the weights-only search (``--activations float``) had a tenth of W8A8's error at the
float model's speed, but ran only where the search returned the same-size preset itself.
"""

from __future__ import annotations

from bitlens.core.plan import Plan
from bitlens.core.results import Progress
from bitlens.core.search import Budget
from bitlens.core.search.latency import MIN_MACS, NotSteered, layer_macs, marginal, speed_limit
from bitlens.core.search.options import HALF_W8A8
from bitlens.core.search.points import SearchResult
from tests.core.test_search import _engine, _run
from tests.core.test_search_latency_rules import pointwise_net

_WEIGHTS_ONLY = "float activations: "  # the second search's progress messages


def _limit(engine):
    w8a8 = Plan.preset(engine.info, "W8A8")
    return speed_limit(engine, w8a8, HALF_W8A8, dict.fromkeys(layer_macs(engine), True))


def _activations(result: SearchResult) -> set:
    return {result.best.plan[layer.name].activation for layer in result.best.plan.info.layers}


def _second_ran(yielded) -> bool:
    return any(isinstance(y, Progress) and y.message.startswith(_WEIGHTS_ONLY) for y in yielded)


def test_marginal_saving_also_searches_weights_only_and_keeps_the_better_plan() -> None:
    """1x1 convolutions of 128 channels with a 3x3 depthwise one between them: steered, W8A8
    predicted at x0.89 (rapidocr-det: x0.88). On the old code the search returned a plan with
    8-bit activations (error 0.028 on the held-back row) and never searched weights only; the
    weights-only plan has 0.012 there."""
    engine = _engine(pointwise_net(128, 8, dw=True))
    verdict = _limit(engine)
    assert not isinstance(verdict, NotSteered) and marginal(verdict)
    result, yielded = _run(engine, Budget(size_ratio=0.3), check_export=True)
    assert _second_ran(yielded)
    assert result.check_rows  # the held-back feeds decided
    assert _activations(result) == {None}  # weights only: every activation float
    w8a8 = next(r for r in result.references if r.label == "W8A8")
    assert result.best.check_error is not None and result.best.check_error < w8a8.error
    steer = result.steering
    assert steer is not None and steer.limit is not None  # still the steered line, extended
    assert steer.text.startswith("speed: plans are kept to")
    assert f"W8A8's predicted saving is marginal (x{steer.w8a8:.2f}" in steer.text
    assert "did better on the held-back feeds and is returned" in steer.text
    assert "\n" not in steer.text
    assert result.to_dict()["steering"]["text"] == steer.text
    # the panel's short label says what runs, not the limit the returned plan does not keep
    assert steer.weights_only and result.to_dict()["steering"]["weights_only"]
    assert steer.short().startswith("weights only, float speed")


def test_a_real_saving_or_an_explicit_limit_searches_once() -> None:
    """W8A8 predicted at x0.78 (no depthwise layer): its saving is not marginal, the line says
    nothing of it; an explicit ratio (``--max-latency 0.95``) never gives way either."""
    engine = _engine(pointwise_net(128, 8))
    assert not marginal(_limit(engine))
    result, _ = _run(engine, Budget(size_ratio=0.3))
    assert result.steering is not None and "marginal" not in result.steering.text
    assert not result.steering.weights_only
    assert result.steering.short().startswith("kept to x")
    engine = _engine(pointwise_net(128, 8, dw=True))
    result, yielded = _run(engine, Budget(size_ratio=0.3), max_latency=0.95)
    assert not _second_ran(yielded) and None not in _activations(result)
    assert result.steering is not None and "marginal" not in result.steering.text


def test_the_rule_holds_where_the_prediction_does() -> None:
    """Not steered because W8A8 is predicted no faster than float: marginal; not steered
    because the model is under MIN_MACS (W8A8 ran slower than float there whatever the model
    predicted): searched once, as before."""
    assert marginal(NotSteered(1.21, 2.0 * MIN_MACS))
    assert not marginal(NotSteered(1.21, MIN_MACS / 2))
    assert not marginal(NotSteered(0.5, 2.0 * MIN_MACS))
