"""A search that does not steer for speed says so, with W8A8's predicted time (core/search/
latency.py NotSteered): in the result (CLI text, front JSON) and in the Find Plan panel
(tests/gui/test_search_panel_speed.py).

Before, a default search (``--max-latency half``) on a model where W8A8 is predicted no
faster than float (PP-OCRv6's tiny detector: 1.21x predicted, 1.36-1.47x measured) locked
nothing and the result said nothing about speed: a user who asked for half of W8A8's
speed-up could not tell that there was none to keep.
"""

from __future__ import annotations

import onnx
import pytest

from bitlens.cli.search import render
from bitlens.core.plan import Plan
from bitlens.core.search import Budget
from bitlens.core.search.latency import NotSteered, layer_macs, speed_limit
from bitlens.core.search.options import HALF_W8A8
from tests.core.test_search import _engine, _run
from tests.core.test_search_latency_rules import pointwise_net


def depthwise_net() -> onnx.ModelProto:
    """x[N,128,8,8] -> (Conv(pw_i: 128x128x1x1) -> Relu -> Conv(dw_i: 128x1x5x5, group 128)
    -> Relu) x 2 -> Conv(head: 128x128x1x1) -> y: MobileNet-style blocks whose 5x5 depthwise
    convolutions run slower on QLinearConv than in float (core/search/layer_cost.py)."""
    return pointwise_net(128, 8, names=["pw0", "dw0", "pw1", "dw1", "head"], kernel=5)


def _limit(engine):
    macs = layer_macs(engine)
    w8a8 = Plan.preset(engine.info, "W8A8")
    return speed_limit(engine, w8a8, HALF_W8A8, dict.fromkeys(macs, True))


def test_a_search_that_does_not_steer_says_so_with_w8a8s_predicted_ratio() -> None:
    """The 1x1 convolutions alone would be steered (128 channels: their kernels save time);
    the 5x5 depthwise ones cost more on QLinearConv than the 1x1 ones save, so W8A8 is
    predicted slower than float, above MIN_MACS: not steered, for that reason."""
    assert not isinstance(_limit(_engine(pointwise_net(128, 8))), NotSteered)
    engine = _engine(depthwise_net())
    verdict = _limit(engine)
    assert isinstance(verdict, NotSteered)
    assert verdict.w8a8 > 1.0 and verdict.kernel_macs >= 1_000_000
    result, _ = _run(engine, Budget(size_ratio=0.5))  # the default --max-latency half
    steer = result.steering
    assert steer is not None and steer.limit is None
    assert steer.w8a8 == pytest.approx(verdict.w8a8)
    ratio = f"x{verdict.w8a8:.2f}"
    assert steer.text.startswith("speed: not steered") and ratio in steer.text
    assert "no faster than float" in steer.text and ratio in steer.short()
    # the CLI's text, one line; the front JSON (``--front`` writes to_dict)
    (line,) = [x for x in render(result, "plan.json").splitlines() if "not steered" in x]
    assert line.strip() == steer.text
    assert result.to_dict()["steering"] == {
        "steered": False, "w8a8_predicted": verdict.w8a8, "limit": None, "text": steer.text,
        "weights_only": steer.weights_only,
    }  # fmt: skip


def test_a_steered_search_says_its_limit() -> None:
    """The steered case carries the same record, with its limit (it was a note before)."""
    engine = _engine(pointwise_net(128, 8))
    limit = _limit(engine)
    result, _ = _run(engine, Budget(size_ratio=0.5))
    steer = result.steering
    assert steer is not None and steer.limit == pytest.approx(limit.limit)  # type: ignore[union-attr]
    assert (
        steer.text.startswith("speed: plans are kept to")
        and result.to_dict()["steering"]["steered"]
    )
    assert not any(n.startswith("speed:") for n in result.notes)


def test_a_tiny_model_is_not_steered_for_its_size() -> None:
    """Under MIN_MACS the line names the MACs, and still gives W8A8's predicted ratio."""
    engine = _engine(pointwise_net(16, 8))
    verdict = _limit(engine)
    assert isinstance(verdict, NotSteered) and verdict.kernel_macs < 1_000_000
    assert f"x{verdict.w8a8:.2f}" in verdict.describe() and "MACs per sample" in verdict.describe()
    # Silero VAD v5's W8A8 has no integer-kernel layer (its LSTMs sit inside an If): the line
    # says that rather than a count of 0 MACs
    assert "none of its layers runs on an integer kernel" in NotSteered(1.0, 0.0).describe()

