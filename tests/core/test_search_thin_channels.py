"""Per-channel activation ranges resting on few calibration values (core/search/activations.py):
a MatMul on [rows, features] calibrated on a few rows gives each channel's range as many
values as rows, and new rows escape it (magika's last Dense: 4 values per channel, 60-99 of
512 channels escaped on every new row). The search tries per-channel activations only on
inputs whose channels hold MIN_CHANNEL_VALUES calibration values."""

from __future__ import annotations

import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.formats import Granularity, parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.results import drain
from bitlens.core.search import Budget
from bitlens.core.search import activations as acts
from tests.builders import conv_net, outlier_feeds, outlier_mlp
from tests.core.test_search import _run


def _engine(rows: int) -> Engine:
    # an input channel 40x the others: per-channel quantization of fc1's input pays on the
    # rows the search fits, so without the rule it is measured there
    feeds = outlier_feeds(n=6, rows=rows)
    data = Dataset(tuple(feeds), None, (0, 1, 2), (3, 4, 5))
    engine = Engine(from_proto(outlier_mlp()), data, device="cpu")
    drain(engine.calibrate("minmax"))
    return engine


def _per_channel_tries(result) -> set[str]:
    return {
        s.layer for s in result.sensitivities
        if s.kind == "activation" and s.format != "float"
        and parse_format(s.format).granularity is Granularity.CHANNEL
    }  # fmt: skip


@pytest.fixture(scope="module")
def thin() -> Engine:
    return _engine(rows=4)  # 3 calibration feeds of 4 rows: 12 values per channel


def test_channel_values_counts_each_channels_calibration_values(thin: Engine) -> None:
    info = thin.info
    fc1, fc2 = info.layer("fc1"), info.layer("fc2")
    # independent count: the calibration feeds' rows (axis 0) times every axis but the
    # channel one (the last: a MatMul reads [rows, features])
    rows = sum(thin.data.samples[i]["x"].shape[0] for i in thin.data.calibration)
    assert rows == 12
    assert thin.channel_values(fc1, fc1.activations[0]) == rows
    assert thin.channel_values(fc2, fc2.activations[0]) == rows


def test_thin_per_channel_ranges_are_not_tried(
    thin: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = Budget(size_ratio=0.5)
    result, _ = _run(thin, budget, wide_activations=2)
    assert not _per_channel_tries(result)
    assert all(
        c.activation is None or c.activation.granularity is not Granularity.CHANNEL
        for c in result.best.plan.choices.values()
    )
    # the case reaches the rule: without it both inputs' per-channel formats are measured
    monkeypatch.setattr(acts, "MIN_CHANNEL_VALUES", 0)
    result, _ = _run(thin, budget, wide_activations=2)
    assert _per_channel_tries(result) == {"fc1", "fc2"}


def test_per_channel_ranges_on_enough_values_are_tried() -> None:
    engine = _engine(rows=40)  # 120 values per channel
    fc1 = engine.info.layer("fc1")
    assert engine.channel_values(fc1, fc1.activations[0]) == 120 >= acts.MIN_CHANNEL_VALUES
    result, _ = _run(engine, Budget(size_ratio=0.5), wide_activations=2)
    assert _per_channel_tries(result) == {"fc1", "fc2"}


def test_channel_values_of_a_convolution_count_every_position() -> None:
    """conv2 reads r1[1, 8, 8, 8] (NCHW, channel axis 1): 64 values per channel per feed,
    and fc reads flat[1, 16]: one. Counted from the feeds' shapes, independently."""
    proto = conv_net()
    info = from_proto(proto).info
    data = Dataset.random(info, n=6, seed=3)
    engine = Engine(from_proto(proto), data, device="cpu")
    feeds = len(data.calibration)
    conv2, fc = info.layer("conv2"), info.layer("fc")
    assert engine.channel_values(conv2, conv2.activations[0]) == feeds * 8 * 8
    assert engine.channel_values(fc, fc.activations[0]) == feeds


def test_recovery_needs_as_many_calibration_vectors_as_input_features() -> None:
    """GPTQ on mm_b (32 input features): with 3 calibration rows its second-moment matrix
    has rank 3, the compensation fits those rows and its measured gain is theirs, so no
    recovery candidate; with 64 rows it is one."""
    from bitlens.core.recovery import Recovery
    from bitlens.core.search.recovered import choose
    from tests.core.engine_models import mlp_with_fragile_layer

    fmt = parse_format("int3 sym ch")
    for n, rows, expect in ((6, 3, set()), (128, 64, {fmt})):
        proto = mlp_with_fragile_layer()
        data = Dataset.random(from_proto(proto).info, n=n, seed=3)
        engine = Engine(from_proto(proto), data, device="cpu")
        drain(engine.calibrate("minmax"))
        assert sum(data.samples[i]["x"].shape[0] for i in data.calibration) == rows
        layer = engine.info.layer("mm_b")
        _geo, stats = engine.recovery.stats(layer)
        assert stats.count == rows
        assert set(choose(engine, layer, [fmt], (Recovery.GPTQ,))) == expect
