"""Feeds of equal shape join along a dynamic axis 0 only where its rows stand alone.

atspm-detector's function head calls its axis 0 D, the detectors of one signal, and attends
over them: joined, three signals became one of 12 detectors (bitlens.core.engine.row_mixing).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import ROWS_MIX_NOTE, Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.search.guard import split_rows
from tests.core.test_cli_inspect import run_cli
from tests.core.test_engine import plain_run


def _model(mix: bool) -> onnx.ModelProto:
    """x [D, 4] -> (x - mean over D, where ``mix``) -> MatMul W [4, 3] -> y [D, 3]

    With ``mix`` each row's output depends on every other row of the run, as a
    detector's does on its siblings in the atspm head."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    nodes = [helper.make_node("MatMul", ["c" if mix else "x", "W"], ["y"], name="mm")]
    if mix:
        nodes[:0] = [
            helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["x", "m"], ["c"]),
        ]
    graph = helper.make_graph(
        nodes,
        "rows",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["D", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["D", 3])],
        [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _feeds(n: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((3, 4)).astype(np.float32) + i} for i in range(n)]


def test_a_model_that_mixes_rows_runs_every_feed_alone() -> None:
    proto = _model(mix=True)
    model = from_proto(proto)
    feeds = _feeds(4)
    data = Dataset.from_feeds(model.info, feeds)
    assert [data.samples[i]["x"].shape for i in data.evaluation] == [(6, 4)]  # joined
    engine = Engine(model, data)
    list(engine.prepare())
    assert engine.data.rows_mix and ROWS_MIX_NOTE in engine.data.split
    assert [engine.data.samples[i]["x"].shape for i in engine.data.evaluation] == [(3, 4)] * 2
    # the float outputs are what plain ONNX Runtime gives on each feed alone
    got = engine.run_outputs(Plan.float(model.info))["y"]
    want = plain_run(proto, feeds[2:])
    assert all(np.allclose(g, w, rtol=1e-6, atol=1e-6) for g, w in zip(got, want, strict=True))
    # the search's held-back check splits whole feeds, not rows
    _, split = split_rows(engine.data, True, 0.5, seed=0)
    assert len(split.check) == 1 and len(split.check_rows) == 3


def test_rows_that_stand_alone_stay_joined() -> None:
    model = from_proto(_model(mix=False))
    data = Dataset.from_feeds(model.info, _feeds(4))
    engine = Engine(model, data)
    list(engine.prepare())
    assert engine.data is data and not engine.data.rows_mix
    # samples along axis 0 of one array: joined into one run of 6 rows, as before
    arrays = Dataset.from_arrays(model.info, {"x": np.concatenate([f["x"] for f in _feeds(4)])})
    engine = Engine(model, arrays)
    list(engine.prepare())
    assert engine.data is arrays and [arrays.samples[i]["x"].shape[0] for i in arrays.evaluation] == [6]


def test_the_command_line_says_the_feeds_run_alone(tmp_path) -> None:
    path, data = tmp_path / "rows.onnx", tmp_path / "feeds.npz"
    onnx.save(_model(mix=True), path)
    np.savez(data, **{f"x/{i}": f["x"] for i, f in enumerate(_feeds(4))})
    res = run_cli("eval", str(path), "--preset", "W8A8", "--data", str(data))
    assert res.returncode == 0, res.stderr
    notes = [line for line in res.stdout.splitlines() if "rows apart" in line]
    assert notes == [f"note: {ROWS_MIX_NOTE}"]
