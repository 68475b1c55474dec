"""The float reference measures, beyond the values it keeps, only the tensors the presets'
target quantizers read (engine/range_sources.py); any other float tensor's min and max are
measured when a plan first needs them, in one run of the same float session over the
calibration feeds: the same statistics, ranges and evaluations as the reference measuring
every float tensor, and the same messages for NaN and infinite values."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, range_sources, row_cap
from bitlens.core.errors import EngineError
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.targets import TensorQuantizer
from tests.builders import bias, conv_chain, init, model, weights


def _engine(proto: onnx.ModelProto, *, n: int = 6, dims=None) -> Engine:
    loaded = from_proto(proto)
    data = Dataset.random(loaded.info, n=n, seed=5, dims=dims or {"N": 1})
    return Engine(loaded, data, device="cpu")


def _fetches(engine: Engine, monkeypatch) -> list[list[str]]:
    """Every run's fetch list from now on (the engine's own runs: the reference's too)."""
    seen: list[list[str]] = []
    real = engine._run

    def counting(sess, fetch, feeds):
        seen.append(list(fetch))
        return real(sess, fetch, feeds)

    monkeypatch.setattr(engine, "_run", counting)
    return seen


def _plans(info) -> list[Plan]:
    w8a8 = Plan.preset(info, "W8A8")
    return [
        w8a8,
        Plan.preset(info, "W4A8"),
        Plan.uniform(info, "int8 sym ch", "int8 sym"),
        w8a8.with_choices({info.layer_names[1]: LayerChoice.of("bin ch", "uint8 asym")}),
    ]


def test_the_reference_fetches_only_the_presets_target_tensors(monkeypatch) -> None:
    """conv_chain("hswish"): ``x * Clip(x + 3, 0, 6) / 6`` between convs. The W8A8 plan's
    target quantizes the Clip and Mul outputs; the Add's ``x + 3`` no plan's target reads
    on its own. The old reference fetched it on the calibration feeds (every float tensor)."""
    engine = _engine(conv_chain("hswish"))
    engine.keep_rows_apart()  # its run of the first unit fetches every float tensor (below)
    runs = _fetches(engine, monkeypatch)
    list(engine.calibrate("minmax"))
    fetched = {t for names in runs for t in names}
    assert {"r0", "m0", "r1", "m1"} <= fetched  # what the W8A8 target reads
    assert "p0" not in fetched and "p1" not in fetched  # the Adds' outputs: left for later
    assert set(engine._minmax_later) == {"p0", "p1"}
    # the first evaluation of a preset needs nothing more
    runs.clear()
    engine.evaluate(Plan.preset(engine.info, "W8A8"))
    assert not engine._stats.keys() & {"p0", "p1"}
    assert engine._minmax_later == ["p0", "p1"]


@pytest.mark.parametrize("between", ["hswish", "silu"])
def test_ranges_measured_later_equal_those_the_reference_measured(monkeypatch, between) -> None:
    """With nothing measured up front (every extra tensor left for later), each plan's
    target ranges are measured in one run of the reference's float session when first
    needed: the same statistics and evaluations as the reference measuring every float
    tensor (range_sources.LATER off, the old way)."""
    proto = conv_chain(between)
    monkeypatch.setattr(range_sources, "LATER", False)
    every = _engine(proto)
    list(every.calibrate("minmax"))  # as the window and the CLI do before evaluating
    want = [every.evaluate(p) for p in _plans(every.info)]
    assert not every._minmax_later
    monkeypatch.setattr(range_sources, "LATER", True)
    monkeypatch.setattr(range_sources, "preset_sources", lambda info, placement: frozenset())
    later = _engine(proto)
    list(later.calibrate("minmax"))
    assert later._minmax_later  # the target's tensors are left for later
    runs = _fetches(later, monkeypatch)
    got = [later.evaluate(p) for p in _plans(later.info)]
    assert got == want
    assert later._stats == every._stats and later._minmax.items() <= every._minmax.items()
    measured = [names for names in runs if set(names) <= set(every._minmax) - set(later._ref)]
    assert len(measured) == len(later.data.calibration)  # one run per calibration feed, once


def test_calibration_runs_are_split_as_before(monkeypatch) -> None:
    """The first unit's run, which sizes the reference's runs (row_cap), still fetches every
    float tensor the float graph exposes (ONNX Runtime allocates each, fetched or not): the
    same runs and the same reference as before."""
    proto = conv_chain("hswish", size=(16, 16))
    shares = []

    def small_share() -> int:  # fits two rows of the joined feeds, not more
        shares.append(1)
        return 2 * 4 * 16 * 16 * 4 * 13

    monkeypatch.setattr(row_cap, "run_share", small_share)
    monkeypatch.setattr("bitlens.core.engine.reference.run_share", small_share)
    results = []
    for later in (False, True):
        monkeypatch.setattr(range_sources, "LATER", later)
        engine = _engine(proto, n=12)
        plan = Plan.preset(engine.info, "W8A8")
        results.append((engine.evaluate(plan), engine.data.parts, engine._stats))
        assert len(engine.data.samples) > 2  # split into runs of a few rows
    assert shares and results[0] == results[1]


def _log_between() -> onnx.ModelProto:
    """x[N,4,6,6] -> conv0 -> c0 -> Relu -> Log (-inf where c0 <= 0) -> Exp -> conv1 -> y.

    ``lg`` holds -inf on every feed: a min-max-only tensor, as an attention mask's fill."""
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w0", "b0"], ["c0"], name="conv0"),
        mk("Relu", ["c0"], ["r0"]),
        mk("Log", ["r0"], ["lg"]),
        mk("Exp", ["lg"], ["e0"]),
        mk("Conv", ["e0", "w1", "b1"], ["y"], name="conv1"),
    ]
    inits = [
        init("w0", weights((4, 4, 1, 1), seed=1)),
        init("b0", bias(4, seed=2)),
        init("w1", weights((4, 4, 1, 1), seed=3)),
        init("b1", bias(4, seed=4)),
    ]
    g = helper.make_graph(
        nodes,
        "log_between",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 6, 6])],
        inits,
    )
    return model(g, 13)


def test_an_infinite_tensor_measured_later_gets_the_same_message(monkeypatch) -> None:
    """A tensor measured for its min and max alone may hold an infinity (it is then left
    out of the ranges, as before); a quantizer that reads its range gets the same message
    whether the reference or the later run measured it."""
    q = TensorQuantizer("lg", parse_format("uint8 asym"), "lg", "a test's quantizer")
    messages, evaluations = [], []
    for later in (False, True):
        monkeypatch.setattr(range_sources, "LATER", later)
        engine = _engine(_log_between())
        list(engine.calibrate("minmax"))
        assert ("lg" in engine._minmax_later) == later
        with pytest.raises(EngineError) as err:
            engine.target_range(q)
        messages.append(str(err.value))
        assert "lg" not in engine._minmax and not engine._minmax_later
        # the kept values were checked as before: a plan of the layers evaluates
        evaluations.append(engine.evaluate(Plan.preset(engine.info, "W8A8")))
    assert messages[0] == messages[1] and "NaN or infinite" in messages[0]
    assert evaluations[0] == evaluations[1]
