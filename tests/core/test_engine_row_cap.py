"""Rows joined into one run stay within the memory budget's share (engine/row_cap.py).

napari-czann-segment's nucleus segmenter (1024 x 1024 tiles) took 3.4 GB a row at eval and
its window, on 8 random tiles joined 4 to a run, was killed at 16 GB: a run holds every
fetched layer value for all its rows at once."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core import limits
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, reference
from bitlens.core.engine.row_cap import cap_rows
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan


def _conv_net() -> onnx.ModelProto:
    """x [N, 4, 32, 32] -> Conv 4->16 3x3 -> Relu -> Conv 16->16 3x3 -> Relu -> y: each row's
    layer values (64 KiB a tensor) are large next to its input (16 KiB)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 4, 3, 3)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1, "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["y"], name="relu2"),
    ]
    graph = helper.make_graph(
        nodes,
        "rowcap",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, 32, 32])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _rows(engine: Engine) -> list[int]:
    return [int(engine.data.samples[i]["x"].shape[0]) for i in range(len(engine.data.samples))]


def test_joined_rows_are_split_to_fit_the_budget_with_the_same_figures(monkeypatch) -> None:
    model = from_proto(_conv_net())
    plan = Plan.preset(model.info, "W8A8")
    changed = plan.with_choices({"conv2": LayerChoice.of("int4 sym ch", "uint8 asym")})
    # a budget of 1 GiB: the 8 random samples run 4 rows at a time, as the window joins them
    monkeypatch.setenv(limits.ENV_BUDGET, "1G")
    whole = Engine(model, Dataset.random(model.info, 8), device="cpu")
    list(whole.prepare())
    assert _rows(whole) == [4, 4]
    want = [whole.evaluate(plan), whole.evaluate(changed)]
    # 2 MiB: a quarter (512 KiB) for one run's values, under 4 rows' (about 1.3 MiB)
    monkeypatch.setenv(limits.ENV_BUDGET, "2M")
    small = Engine(model, Dataset.random(model.info, 8), device="cpu")
    list(small.prepare())
    rows = _rows(small)
    assert sum(rows) == 8 and max(rows) < 4 and len(rows) > 2
    assert small.data.calibration == tuple(range(len(rows) // 2))
    assert small.data.evaluation == tuple(range(len(rows) // 2, len(rows)))
    # every row's numbers as in the joined runs: Conv computes each image on its own
    assert [small.evaluate(plan), small.evaluate(changed)] == want


def test_cap_rows_keeps_units_whole_and_in_order() -> None:
    feeds = [{"x": np.full((r, 2), i, np.float32)} for i, r in enumerate((1, 2, 1, 3, 1))]
    joined = {"x": np.concatenate([f["x"] for f in feeds])}
    lone = {"x": np.zeros((2, 2), np.float32)}
    data = Dataset(
        (lone, joined),
        labels=np.arange(10),
        calibration=(0,),
        evaluation=(1,),
        parts=((), (1, 2, 1, 3, 1)),
    )
    # 8 bytes a row of input, 1 byte of values per input byte: 24 bytes fit 3 rows a run
    capped = cap_rows(data, 1.0, 24)
    assert [s["x"].shape[0] for s in capped.samples] == [2, 3, 1, 3, 1]
    assert capped.parts == ((), (1, 2), (), (), ())  # a unit of 3 rows runs whole
    assert capped.calibration == (0,) and capped.evaluation == (1, 2, 3, 4)
    np.testing.assert_array_equal(np.concatenate([s["x"] for s in capped.samples[1:]]), joined["x"])
    assert capped.labels is data.labels
    assert cap_rows(data, 1.0, 64) is data  # everything fits: unchanged


def test_the_first_units_buffers_are_given_back_when_the_feed_runs_whole(monkeypatch) -> None:
    """The run of a joined feed's first unit (which sizes the runs) leaves buffers of one
    unit's shape in ONNX Runtime's arena that a run of the whole feed cannot reuse: they are
    given back before the float reference runs it (the same figures), and kept when the
    feeds are split into smaller runs (those reuse them)."""
    model = from_proto(_conv_net())
    plan = Plan.preset(model.info, "W8A8")
    runs: list[int] = []
    released: list[int] = []
    real_run = Engine._run
    monkeypatch.setattr(Engine, "_run", staticmethod(lambda *a: (runs.append(1), real_run(*a))[1]))
    monkeypatch.setattr(reference, "release_arena", lambda: released.append(len(runs)))
    got = []
    for budget, rows in (("1G", [4, 4]), ("2M", None)):
        monkeypatch.setenv(limits.ENV_BUDGET, budget)
        runs.clear()
        released.clear()
        engine = Engine(model, Dataset.random(model.info, 8), device="cpu")
        list(engine.prepare())
        if rows is not None:  # the unit's run, then given back, then the feeds' runs
            assert _rows(engine) == rows and released == [1] and len(runs) == 3
        else:
            assert max(_rows(engine)) < 4 and not released
        got.append(engine.evaluate(plan))
    monkeypatch.setattr(reference, "release_arena", lambda: None)
    monkeypatch.setenv(limits.ENV_BUDGET, "1G")
    kept = Engine(model, Dataset.random(model.info, 8), device="cpu")
    assert kept.evaluate(plan) == got[0] == got[1]
