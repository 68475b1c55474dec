"""Outputs whose rows a TopK picks are named, with the node that picks them.

isbnx's YOLO26n (an NMS-free Ultralytics head) ends in TopK + GatherElements: its
``[batch, 300, 6]`` output holds the 300 best candidates by score, and quantization swaps
near-equal candidates, so ``bitlens eval`` compared other boxes position by position and
said nothing. Here a MatMul scores 8 candidates; the TopK of their best column picks 4 whose
rows are gathered (``det``), next to the MatMul's own output (``raw``) and the picked
positions themselves (``labels``), which are compared as labels and not named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from bitlens.cli import main
from bitlens.core import metrics
from bitlens.core.data import Dataset
from bitlens.core.engine.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.model.selected_outputs import selected_outputs
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions
from bitlens.core.search.deployed import DeployedErrors
from bitlens.core.search.measures import output_error
from bitlens.core.search.state import SearchState
from bitlens.core.usermetric import concat_outputs
from tests.builders import FLOAT, init, model, weights

INT64 = onnx.TensorProto.INT64


def topk_head() -> onnx.ModelProto:
    """x[1, 8, 16] -> MatMul(w[16, 5]) -> raw[1, 8, 5]; the TopK (k=4) of each candidate's
    best column picks rows of raw: det[1, 4, 5]; labels: the picked positions."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["raw"], name="head"),
        helper.make_node("ReduceMax", ["raw"], ["best"], name="best", axes=[2], keepdims=0),
        helper.make_node("TopK", ["best", "k"], ["top", "labels"], name="pick", axis=1),
        helper.make_node("Unsqueeze", ["labels", "last"], ["rows"], name="rows"),
        helper.make_node("Tile", ["rows", "reps"], ["rows5"], name="tile"),
        helper.make_node("GatherElements", ["raw", "rows5"], ["det"], name="gather", axis=1),
    ]
    g = helper.make_graph(
        nodes,
        "topk_head",
        [helper.make_tensor_value_info("x", FLOAT, [1, 8, 16])],
        [
            helper.make_tensor_value_info("det", FLOAT, [1, 4, 5]),
            helper.make_tensor_value_info("raw", FLOAT, [1, 8, 5]),
            helper.make_tensor_value_info("labels", INT64, [1, 4]),
        ],
        [
            init("w", weights((16, 5), seed=3, fan_in=16, channel_axis=1)),
            init("k", np.array([4], np.int64)),
            init("last", np.array([2], np.int64)),
            init("reps", np.array([1, 1, 5], np.int64)),
        ],
    )
    return model(g, opset=13)


def test_the_gathered_output_is_named_with_its_topk() -> None:
    assert selected_outputs(topk_head().graph) == {"det": "pick"}


def test_a_second_pick_among_picked_rows_names_the_later_topk() -> None:
    """YOLO26 takes the TopK of the candidates' scores, gathers them, and takes a TopK again
    over the gathered scores: the output is named with the second."""
    m = topk_head()
    g = m.graph
    g.node.extend([
        helper.make_node("ReduceMax", ["det"], ["det_best"], name="det_best", axes=[2],
                         keepdims=0),
        helper.make_node("TopK", ["det_best", "k2"], ["top2", "pos2"], name="pick2", axis=1),
        helper.make_node("Unsqueeze", ["pos2", "last"], ["rows2"], name="rows2"),
        helper.make_node("Tile", ["rows2", "reps"], ["rows2_5"], name="tile2"),
        helper.make_node("GatherElements", ["det", "rows2_5"], ["final"], name="gather2", axis=1),
    ])  # fmt: skip
    g.initializer.append(init("k2", np.array([2], np.int64)))
    g.output.append(helper.make_tensor_value_info("final", FLOAT, [1, 2, 5]))
    onnx.checker.check_model(m)
    assert selected_outputs(g) == {"det": "pick", "final": "pick2"}


def test_the_note_names_the_output_and_the_topk(tmp_path: Path, capsys) -> None:
    notes = from_proto(topk_head()).info.notes
    assert len([n for n in notes if "picked by score" in n]) == 1
    path = tmp_path / "topk_head.onnx"
    onnx.save(topk_head(), str(path))
    rc = main(["eval", str(path), "--preset", "W8A8", "--samples", "4", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0
    line = next(x for x in err.splitlines() if "picked by score" in x)
    assert "'det' (by 'pick')" in line and "'raw' (by" not in line and "'labels'" not in line
    assert line.endswith("before the pick: 'det' on 'raw'")  # the tensor its error compares


def near_ties(n: int = 6) -> np.ndarray:
    """``n`` feeds of x[1, 8, 16] whose 8 candidates score about 10 in column 0 (apart by
    thousandths, in another order than their positions) and differ elsewhere: 8-bit inputs
    (a step of about 0.05) tie them, so the TopK keeps them in position order and ``det``
    holds other rows than float's."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (n, 8, 16)).astype(np.float32)
    x[:, :, 0] = 10 + 1e-3 * np.stack([rng.permutation(8) for _ in range(n)])
    return x


def identity_head() -> onnx.ModelProto:
    """:func:`topk_head` with w the identity on the first 5 columns: raw holds x's."""
    m = topk_head()
    w = np.zeros((16, 5), np.float32)
    w[:5, :5] = np.eye(5)
    m.graph.initializer[0].CopyFrom(init("w", w))
    return m


def ties_engine() -> Engine:
    """An engine of :func:`identity_head` on :func:`near_ties`, its float reference run."""
    loaded = from_proto(identity_head())
    data = Dataset.from_arrays(loaded.info, {"x": near_ties()}, calibration_fraction=0.5)
    engine = Engine(loaded, data, device="cpu")
    drain(engine.prepare())
    return engine


def search_state(engine: Engine) -> SearchState:
    """The search's state with its references set, as a run without a metric sets it."""
    s = SearchState(engine, SearchOptions(Budget(size_ratio=0.5)))
    s.set_parts()
    s.metric = None  # as runner.py sets it without a metric or labels
    return s


def test_the_picked_output_error_is_the_tensor_before_the_pick() -> None:
    """The rows of det swap under W8A8; its error is raw's (the candidates before the
    TopK), while run_outputs (what the export's checks compare) still gives det itself."""
    engine = ties_engine()
    info = engine.info
    plan = Plan.preset(info, "W8A8")
    ev = engine.evaluate(plan)
    det, raw = ev.outputs["det"], ev.outputs["raw"]
    assert engine.measured_on == {"det": "raw"}
    assert det.measured_on == "raw" and raw.measured_on is None
    assert det.error == raw.error and det.error.sqnr_db > 30
    # compared position by position, det reads the swapped rows (the old number)
    real = engine.run_outputs(plan)["det"]
    ref = engine.run_outputs(Plan(info))["det"]
    assert real[0].shape == (1, 4, 5)
    swapped = metrics.tensor_error(np.concatenate(ref), np.concatenate(real))
    assert swapped.sqnr_db < det.error.sqnr_db - 10, (swapped.sqnr_db, det.error.sqnr_db)
    before = engine.run_outputs(plan, before_pick=True)["det"]
    assert before[0].shape == (1, 8, 5)
    # the search's single-layer measurements read raw's values under det's name too
    kept = engine.plan_outputs(plan, before_pick=True)["det"]
    assert all(np.array_equal(a, b) for a, b in zip(kept, before, strict=True))


def test_eval_says_which_tensor_the_error_compares(tmp_path: Path, capsys) -> None:
    path = tmp_path / "ties.onnx"
    onnx.save(identity_head(), str(path))
    np.savez(tmp_path / "x.npz", x=near_ties())
    rc = main(["eval", str(path), "--preset", "W8A8", "--data", str(tmp_path / "x.npz"),
               "--device", "cpu"])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0
    lines = out.out.splitlines()
    at = next(i for i, x in enumerate(lines) if x.startswith("output det:"))
    assert "compares 'raw', the candidates before the pick" in lines[at + 1]
    note = next(x for x in out.err.splitlines() if "picked by score" in x)
    assert "measured on the candidates before the pick: 'det' on 'raw'" in note


def test_the_search_measures_plans_before_the_pick() -> None:
    """The search's output error (its fitted feeds) reads det's candidates before the TopK:
    the same number as raw's, not the swapped rows'."""
    engine = ties_engine()
    info = engine.info
    s = search_state(engine)
    assert s.ref["det"].shape == s.ref["raw"].shape  # raw's values under det's name
    plan = Plan.preset(info, "W8A8")
    error, _metric = s._measure(plan)
    got = concat_outputs(engine.run_outputs(plan, s.split.fit, before_pick=True))
    assert error == output_error(s.ref, got)
    # det alone: its candidates before the pick against its swapped rows (the old number)
    real_ref = concat_outputs(engine.run_outputs(Plan(info), s.split.fit))
    real = concat_outputs(engine.run_outputs(plan, s.split.fit))
    before = output_error({"det": s.ref["det"]}, got)
    assert output_error({"det": real_ref["det"]}, real) > 5 * before
    assert before == output_error({"raw": s.ref["raw"]}, got)


def test_the_search_compares_exports_before_the_pick_too() -> None:
    """The search's check of exports in plain ONNX Runtime (deployed.py) reads the same
    tensor: the export exposes raw for det, so its error is the simulation's."""
    engine = ties_engine()
    info = engine.info
    s = search_state(engine)
    plan = Plan.preset(info, "W8A8")
    simulated, _ = s._measure(plan)
    deployed = DeployedErrors(engine, s.fit_part, None, None, before_pick=True).error(plan)
    assert deployed is not None
    assert deployed[0] == pytest.approx(simulated, rel=0.05)
