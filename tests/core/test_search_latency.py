"""The search steers toward plans that deploy as fast as W8A8 (core/search/latency.py).

The model puts its time and its bytes in different layers, as real convnets do: three
convolutions hold 97% of the MACs and 8% of the weights, a classifier Gemm the rest. Before
the steering, the default search at W8A8's size gave the heaviest convolution int7 weights
(a better error per byte), so it ran as a float Conv on dequantized weights: the exported
file had 2 QLinearConvs where W8A8's has 3.
"""

from __future__ import annotations

import re

import onnx
import pytest
from onnx import helper

from bitlens.core.errors import SearchError
from bitlens.core.export.deployed import optimized_model
from bitlens.core.export.exporter import export
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions, exported_size
from bitlens.core.search import speed as speed_mod
from bitlens.core.search.latency import (
    SLACK,
    NotSteered,
    Speed,
    layer_costs,
    layer_macs,
    plan_kernels,
    speed_limit,
    unlocked,
)
from bitlens.core.search.layer_cost import BOUNDARY_COST, INTEGER_COST, OFF_KERNEL
from bitlens.core.search.options import (
    AS_W8A8,
    DEFAULT_WEIGHT_FORMATS,
    HALF_W8A8,
    parse_max_latency,
)
from tests.builders import FLOAT, bias, init, model, weights
from tests.core.engine_models import small_cnn
from tests.core.test_cli_entry import run_cli
from tests.core.test_search import _engine, _run


def convs_then_fc() -> onnx.ModelProto:
    """x[N,3,16,16] -> Conv(a: 16x3x3x3) -> Relu -> Conv(b: 32x16x3x3) -> Relu
    -> Conv(c: 32x32x3x3) -> Relu -> MaxPool 4x4 -> Flatten -> Gemm(fc: 128x512) -> Relu
    -> Gemm(out: 10x128) -> y[N,10]"""
    nodes = [
        helper.make_node("Conv", ["x", "a.w", "a.b"], ["c1"], name="conv_a", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "b.w", "b.b"], ["c2"], name="conv_b", pads=[1] * 4),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "c.w", "c.b"], ["c3"], name="conv_c", pads=[1] * 4),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node(
            "MaxPool", ["r3"], ["p"], name="pool", kernel_shape=[4, 4], strides=[4, 4]
        ),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["h"], name="fc", transB=1),
        helper.make_node("Relu", ["h"], ["rh"], name="relu4"),
        helper.make_node("Gemm", ["rh", "out.w", "out.b"], ["y"], name="out", transB=1),
    ]
    inits = [
        init("a.w", weights((16, 3, 3, 3), seed=1)), init("a.b", bias(16, seed=2)),
        init("b.w", weights((32, 16, 3, 3), seed=3)), init("b.b", bias(32, seed=4)),
        init("c.w", weights((32, 32, 3, 3), seed=5)), init("c.b", bias(32, seed=6)),
        init("fc.w", weights((128, 512), seed=7)), init("fc.b", bias(128, seed=8)),
        init("out.w", weights((10, 128), seed=9)), init("out.b", bias(10, seed=10)),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes,
        "convs_then_fc",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", 10])],
        inits,
    )
    return model(g)


@pytest.fixture(scope="module")
def engine():
    return _engine(convs_then_fc())


def _qlinear_convs(engine, plan: Plan, path) -> int:
    """QLinearConv nodes in the graph ONNX Runtime runs for ``plan``'s export."""
    drain(export(engine, plan, str(path)))
    return sum(
        n.op_type == "QLinearConv"
        for n in optimized_model(str(path), ["CPUExecutionProvider"]).graph.node
    )


def test_w8a8_limited_search_keeps_the_heavy_convolutions_on_integer_kernels(
    engine, tmp_path, monkeypatch
) -> None:
    """At W8A8's size, the search limited to W8A8's speed runs every convolution as QLinearConv in
    ONNX Runtime's own optimized graph, as W8A8 does; its speed check times the W8A8 export
    the search built for its sizes (one export written: the plan's)."""
    w8a8 = Plan.preset(engine.info, "W8A8")
    limit = exported_size(engine, w8a8)
    written: list[str] = []
    real_export = speed_mod.write_export

    def counted(eng, plan, path, *a, **kw):
        written.append(str(path))
        return real_export(eng, plan, path, *a, **kw)

    monkeypatch.setattr(speed_mod, "write_export", counted)
    result, _ = _run(
        engine, Budget(max_bytes=limit), check_export=True, check_fraction=0, max_latency=AS_W8A8
    )
    best = result.best
    assert best.exported_bytes is not None and best.exported_bytes <= limit
    assert _qlinear_convs(engine, w8a8, tmp_path / "w8a8.onnx") == 3
    assert _qlinear_convs(engine, best.plan, tmp_path / "best.onnx") == 3
    steer = result.steering
    assert steer is not None and steer.text.startswith("speed: plans are kept to")
    assert result.speed is not None and result.speed.w8a8_ms is not None
    assert len(written) == 1  # the plan; W8A8 was built by the search already


def test_speed_limit_locks_the_layers_whose_kernels_carry_the_time(engine) -> None:
    """Time saved per weight byte decides: the Gemms (0.25 MAC per byte) leave their kernels
    first, as far as the slack allows; the convolutions (64 to 256) keep theirs. W8A8's
    predicted time: its kernels' MACs at INTEGER_COST plus the quantize work per output
    element of its kernel layers (core/search/layer_cost.py)."""
    macs = layer_macs(engine)
    assert macs["conv_c"] == 32 * 32 * 9 * 16 * 16 and macs["fc"] == 128 * 512
    w8a8 = Plan.preset(engine.info, "W8A8")
    assert plan_kernels(engine, w8a8) == set(macs)
    able = dict.fromkeys(macs, True)
    speed = speed_limit(engine, w8a8, AS_W8A8, able)
    assert isinstance(speed, Speed)
    total = sum(macs.values())
    # output elements: 16 and 32 channels at 16x16, 128 and 10 rows
    elements = 16 * 256 + 2 * 32 * 256 + 128 + 10
    ref = (INTEGER_COST * total + BOUNDARY_COST * elements) / total
    assert layer_costs(engine, macs)["conv_b"].boundary == BOUNDARY_COST * 32 * 256
    assert speed.w8a8 == pytest.approx(ref)
    assert speed.limit == pytest.approx(ref * (1 + SLACK))
    # the slack frees the Gemms; conv_a (27 MACs per output element: the fewest per byte of
    # the convolutions) is next, but off its kernel between its 8-bit activations it costs
    # OFF_KERNEL of its float time (before session 13 it counted 1.0 and was freed too)
    assert speed.locked == {"conv_a", "conv_b", "conv_c"}
    freed = (macs["fc"] + macs["out"]) * (OFF_KERNEL - INTEGER_COST) / total
    assert speed.predict(speed.locked - {"conv_a"}) > speed.limit
    assert speed.predict(speed.locked) == pytest.approx(speed.w8a8 + freed)
    assert speed.predict(speed.locked) <= speed.limit
    # a ratio of the float time: W8A8 at the least; at float's time the quantize work of
    # 8-bit activations still needs the heaviest kernel; none locked at twice float's
    at_float = speed_limit(engine, w8a8, 1.0, able)
    assert isinstance(at_float, Speed) and speed.predict(()) > 1.0
    assert at_float.locked == {"conv_c"} and at_float.predict(at_float.locked) <= 1.0
    assert speed_limit(engine, w8a8, 2.0, able).locked == frozenset()  # type: ignore[union-attr]
    low = speed_limit(engine, w8a8, 0.1, able)
    assert isinstance(low, Speed) and low.limit == pytest.approx(low.w8a8) and low.locked == set(macs)
    # the default: halfway from W8A8's predicted time to float's; it locks a subset of W8A8's
    half = speed_limit(engine, w8a8, HALF_W8A8, able)
    assert isinstance(half, Speed) and half.limit == pytest.approx((ref + 1) / 2)
    assert half.locked <= speed.locked and half.predict(half.locked) <= half.limit
    assert all(half.predict(half.locked - {n}) > half.limit for n in half.locked)  # no more
    # a layer whose candidates cannot keep its kernel is not locked (nor counted in W8A8's)
    no_c = speed_limit(engine, w8a8, AS_W8A8, {**able, "conv_c": False})
    assert isinstance(no_c, Speed) and "conv_c" not in no_c.locked | no_c.kernels
    # freeing a locked layer raises the limit to what the others reach
    assert unlocked(speed, ["conv_c"]).limit == pytest.approx(speed.predict({"conv_a", "conv_b"}))


def test_small_models_are_not_steered() -> None:
    """Under MIN_MACS per sample ONNX Runtime's W8A8 runs slower than float (small_cnn: 88k
    MACs, measured 1.18x): nothing to steer."""
    tiny = _engine(small_cnn())
    assert isinstance(speed_limit(tiny, Plan.preset(tiny.info, "W8A8"), AS_W8A8, {}), NotSteered)


def test_a_small_size_budget_frees_locked_layers(engine) -> None:
    """28% of W8A8's size does not fit every convolution's kernel (30% does, 26% none) next to
    the smallest classifier: the budget comes first, the fewest MACs per byte leave their
    kernels first (conv_a: 64; conv_b and conv_c: 256, by name), and the plan is within the
    raised limit. The candidates leave out the kernel formats below 4 bits (int3, ternary,
    binary: with them every layer fits a fifth of W8A8's size on an integer kernel), so the
    smallest formats (2-bit codebooks and blocks) have no kernel, as all did before."""
    limit = exported_size(engine, Plan.preset(engine.info, "W8A8")) * 28 // 100
    narrow = ("int3 sym ch", "tern ch", "bin ch")
    formats = tuple(f for f in DEFAULT_WEIGHT_FORMATS if f not in narrow)
    result, _ = _run(engine, Budget(max_bytes=limit), max_latency=AS_W8A8, weight_formats=formats)
    assert result.best.file_bytes <= limit
    assert result.steering is not None
    note = result.steering.text
    kept = int(re.search(r"(\d+) of \d+ layer\(s\) keep", note).group(1))  # type: ignore[union-attr]
    assert 0 < kept < 3
    assert "conv_c" in plan_kernels(engine, result.best.plan)


def test_max_latency_option_and_parsing() -> None:
    assert parse_max_latency("w8a8") == AS_W8A8
    assert (
        parse_max_latency("Half") == HALF_W8A8 == SearchOptions(Budget(size_ratio=0.5)).max_latency
    )
    assert parse_max_latency(" none ") is None
    assert parse_max_latency("0.5") == 0.5
    for bad in ("fast", "0", "-1"):
        with pytest.raises(SearchError, match="max latency"):
            parse_max_latency(bad)
    with pytest.raises(SearchError, match="max latency"):
        SearchOptions(Budget(size_ratio=0.5), max_latency="fast")
    with pytest.raises(SearchError, match="max latency"):
        SearchOptions(Budget(size_ratio=0.5), max_latency=0.0)


def test_cli_max_latency(tmp_path) -> None:
    """A wrong ``--max-latency`` is one line, before the model is run (the text sample's
    search in test_search_samples.py runs with ``none``)."""
    path = tmp_path / "net.onnx"
    onnx.save(convs_then_fc(), path)
    plan = tmp_path / "plan.json"
    res = run_cli("search", str(path), "--samples", "6", "--max-latency", "fast", "-o", str(plan))
    assert res.returncode == 2 and not plan.exists()
    assert res.stderr.strip().count("\n") == 0 and "max latency" in res.stderr
