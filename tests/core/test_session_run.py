"""The engine's runs skip ONNX Runtime's Python input check (engine/session_run.py), whose
list membership test cost inputs x feeds string comparisons per run (4-5 ms a run for a
200-layer MatMul stack's 600 fed weights and quantizer parameters), and return the arrays
``InferenceSession.run`` returns."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, session_run
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.test_engine_scale import deep_mlp


def fed_adds(n: int = 12):
    """x -> Add(w0) -> y0 -> Add(w1) -> y1 ... -> y{n-1}; every w_i a graph input (all
    required), every y_i a graph output."""
    nodes, inputs, x = [], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])], "x"
    for i in range(n):
        inputs.append(helper.make_tensor_value_info(f"w{i}", TensorProto.FLOAT, [3]))
        nodes.append(helper.make_node("Add", [x, f"w{i}"], [f"y{i}"]))
        x = f"y{i}"
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [2, 3]) for i in range(n)]
    m = helper.make_model(
        helper.make_graph(nodes, "fed_adds", inputs, outs),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    m.ir_version = 9
    return m


def test_fast_run_returns_the_plain_runs_arrays_in_fetch_order() -> None:
    m = fed_adds()
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 3)).astype(np.float32)}
    feeds |= {f"w{i}": rng.standard_normal(3).astype(np.float32) for i in range(12)}
    fetch = ["y11", "y3", "y0"]
    got = session_run.run_session(sess, fetch, feeds)
    want = sess.run(fetch, feeds)
    assert len(got) == 3
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    # the straightforward sum, in float32 as ORT adds
    expect = feeds["x"].copy()
    for i in range(4):
        expect = expect + feeds[f"w{i}"]
    np.testing.assert_array_equal(got[1], expect)


def test_a_missing_input_gets_ort_own_message() -> None:
    m = fed_adds(3)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"x": np.zeros((2, 3), np.float32), "w0": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"Required inputs \(\['w1', 'w2'\]\) are missing"):
        session_run.run_session(sess, ["y2"], feeds)


def _evaluate(monkeypatch, plain: bool):
    monkeypatch.setattr(session_run, "PLAIN", plain)
    model = from_proto(deep_mlp(depth=6, width=8))
    data = Dataset.random(model.info, n=8, seed=1)
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    plan = Plan.preset(model.info, "W8A8")
    first = engine.evaluate(plan)
    changed = engine.evaluate(
        plan.with_choices({"mm2": LayerChoice.of("int4 sym ch", "uint8 asym")})
    )
    engine.close()
    return first, changed


def test_engine_runs_skip_the_list_check_and_give_the_same_numbers(monkeypatch) -> None:
    checks: list[int] = []
    original = ort.InferenceSession._validate_input

    def counted(self, names):
        checks.append(len(names))
        return original(self, names)

    monkeypatch.setattr(ort.InferenceSession, "_validate_input", counted)
    plain = _evaluate(monkeypatch, plain=True)
    assert checks, "the straightforward path runs through InferenceSession.run"
    checks.clear()
    fast = _evaluate(monkeypatch, plain=False)
    # the engine's own runs (the float reference, the plan's, the local errors') go
    # straight to the C++ run; the few left are the arena release's one-input session
    assert all(n <= 1 for n in checks), checks
    for p, f in zip(plain, fast, strict=True):
        assert p.layers == f.layers
        assert p.outputs == f.outputs
        assert p.first_divergence == f.first_divergence
