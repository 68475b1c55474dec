"""The 1-LSB rule kernel by kernel: every segment cut out into one model (two sessions) reaches
the verdicts that running each segment in its own two sessions reaches
(bitlens.core.export.segments)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import fidelity, probes, segments, verdict
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.export.exporter import ExportOptions, ExportResult, export
from bitlens.core.export.report import FidelityReport
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests import builders
from tests.core.export_models import conv_net, random_feeds
from tests.core.test_export_verdict import _overflow_model


def _engine(proto: onnx.ModelProto, data: Dataset | None = None, **dims: int) -> Engine:
    model = from_proto(proto)
    engine = Engine(model, data or random_feeds(model.info, 3, dims=dims), device="cpu")
    drain(engine.calibrate())
    return engine


def _both(
    engine: Engine, plan: Plan, result: ExportResult, monkeypatch: pytest.MonkeyPatch
) -> tuple[FidelityReport, FidelityReport, list[list[str]]]:
    """The check with the cut model, then with every segment in its own sessions; and the
    targets the cut model was asked for (empty: no segment was in doubt)."""
    calls: list[list[str]] = []
    real = segments.run_segments

    def counting(*args, one_by_one: bool = False):
        if not one_by_one:
            calls.append(list(args[2]))  # the targets in doubt
        return real(*args, one_by_one=one_by_one)

    monkeypatch.setattr(segments, "run_segments", counting)
    fast = drain(fidelity.check_fidelity(engine, plan, result, latency_budget_s=0.0))
    monkeypatch.setattr(
        fidelity, "local_checks", functools.partial(segments.local_checks, one_by_one=True)
    )
    slow = drain(fidelity.check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert len(calls) <= 1
    return fast, slow, calls


def _same_verdicts(fast: FidelityReport, slow: FidelityReport) -> None:
    assert fast.failures == slow.failures
    assert fast.notes == slow.notes
    # local_lsb, levels, local_max_abs and local_tolerance value for value (repr: NaN == NaN)
    assert repr(fast.quantizers) == repr(slow.quantizers)
    assert repr(fast.outputs) == repr(slow.outputs)


def test_integer_kernels_drift_only_through_depth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(conv_net(channels=8))
    plan = Plan.preset(engine.info, "W8A8")
    result = drain(export(engine, plan, tmp_path / "o.onnx", ExportOptions()))
    fast, slow, doubt = _both(engine, plan, result, monkeypatch)
    _same_verdicts(fast, slow)
    assert fast.passed
    assert len(doubt) == 1 and len(doubt[0]) > 1  # several segments, one cut model
    # the segments were really run: at least one quantizer was checked on its own segment
    assert any(q.local_lsb is not None for q in fast.quantizers)
    assert all(q.local_lsb <= 1 for q in fast.quantizers if q.local_lsb is not None)


def test_a_layer_whose_own_kernel_drifts_fails_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conv2's int32 bias (read only by the deployed kernel; the as-written reference adds the
    engine's float bias) moved by many steps: conv2's output codes drift by far more than 1
    LSB in its own segment, while the file as written still equals the engine's graph."""
    engine = _engine(conv_net(channels=8))
    plan = Plan.preset(engine.info, "W8A8")
    path = tmp_path / "o.onnx"
    result = drain(export(engine, plan, path, ExportOptions()))
    bias = result.layers["conv2"].bias
    assert bias is not None
    model = onnx.load(str(path))
    dq = next(n for n in model.graph.node if bias.feeds in n.output)
    t = next(t for t in model.graph.initializer if t.name == dq.input[0])
    t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) + np.int32(200_000), t.name))
    onnx.save(model, str(path))
    fast, slow, doubt = _both(engine, plan, result, monkeypatch)
    _same_verdicts(fast, slow)
    assert len(doubt) == 1
    assert not fast.passed
    drift = [f for f in fast.failures if "own segment" in f]
    assert drift and all("LSB" in f for f in drift)
    assert any(q.local_lsb is not None and q.local_lsb > 1 for q in fast.quantizers)
    assert all(o.as_written_exact for o in fast.outputs)


def test_nan_model_gets_the_same_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(1).normal(0, 1, (4, 2, 8)).astype(np.float32)
    engine = _engine(_overflow_model(), Dataset(tuple({"x": v} for v in x), source="test"))
    plan = Plan.preset(engine.info, "W8A16")
    result = drain(export(engine, plan, tmp_path / "o.onnx", ExportOptions()))
    fast, slow, doubt = _both(engine, plan, result, monkeypatch)
    _same_verdicts(fast, slow)
    assert not fast.passed
    assert doubt == []  # NaN in both runs alike: bit-exact, no segment in doubt
    assert any("NaN" in f and "'head'" in f for f in fast.failures)


def _mlp(k: int = 512) -> onnx.ModelProto:
    """x[N,k] -> MatMul -> Add -> Relu -> MatMul -> Add -> y[N,64]: ORT fuses the MatMul + Add
    pairs of the deployed session, which sums in another order than the file as written."""
    rng = np.random.default_rng(0)
    inits = {
        "W1": rng.normal(0, 1 / np.sqrt(k), (k, 256)), "b1": rng.normal(0, 1, 256),
        "W2": rng.normal(0, 1 / 16, (256, 64)), "b2": rng.normal(0, 1, 64),
    }  # fmt: skip
    mk = onnx.helper.make_node
    g = onnx.helper.make_graph(
        [
            mk("MatMul", ["x", "W1"], ["h"], name="fc1"), mk("Add", ["h", "b1"], ["hb"]),
            mk("Relu", ["hb"], ["r"]), mk("MatMul", ["r", "W2"], ["z"], name="fc2"),
            mk("Add", ["z", "b2"], ["y"]),
        ],
        "mlp",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", k])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 64])],
        [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()],
    )  # fmt: skip
    return builders.model(g, opset=17)


def test_float_reassociation_only_gets_the_same_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(_mlp(), N=16)
    plan = Plan.uniform(engine.info, "int8 sym ch", "fp16")
    result = drain(export(engine, plan, tmp_path / "o.onnx", ExportOptions()))
    fast, slow, doubt = _both(engine, plan, result, monkeypatch)
    _same_verdicts(fast, slow)
    assert doubt == [["y"]]  # only the output's last segment is in doubt, and it was run
    assert fast.passed, fast.failures
    assert [o.level for o in fast.outputs] == [verdict.REASSOCIATION]
    assert fast.outputs[0].local_max_abs is not None


def test_cut_model_computes_each_segment_as_its_own_model(tmp_path: Path) -> None:
    """Every target of the cut model, as written, equals its one-segment model's value."""
    engine = _engine(conv_net(channels=8))
    plan = Plan.preset(engine.info, "W8A8")
    result = drain(export(engine, plan, tmp_path / "o.onnx", ExportOptions()))
    exported = onnx.load(str(result.path))
    recs = [q for r in result.layers.values() for q in r.quantizers]
    targets = [probes.probe_tensor(q) for q in recs] + ["y"]
    boundary = {probes.probe_tensor(q) for q in recs} | {"x"}
    types = probes.tensor_types(exported)
    rng = np.random.default_rng(3)
    feed: dict[str, np.ndarray] = {"x": rng.normal(0, 1, (2, 3, 16, 16)).astype(np.float32)}
    for q in recs:  # codes of any value in range
        name = probes.probe_tensor(q)
        shape = [d.dim_value or 2 for d in types[name].tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(types[name].tensor_type.elem_type)
        feed[name] = rng.integers(0, 100, shape).astype(dtype)
    cut: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    alone: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    args = (exported, exported, targets, boundary, types, ["CPUExecutionProvider"], [feed])
    done_cut = segments.run_segments(*args, cut.update)
    done_alone = segments.run_segments(*args, alone.update, one_by_one=True)
    assert set(done_cut) == set(done_alone) == cut.keys() == alone.keys()
    assert len(cut) >= len(recs)
    for t in cut:
        for a, b in zip(cut[t], alone[t], strict=True):
            assert np.array_equal(a, b, equal_nan=True), t


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(np.int8, np.int8), (np.uint8, np.uint8), (np.int8, np.int16), (np.int16, np.int16)],
)
def test_code_distance_in_narrow_integers_equals_int64(ours: type, theirs: type) -> None:
    """The LSB distance of integer codes, computed in int16/int32, equals the int64 one at
    the extremes of each type (no wrap-around)."""
    rec = QuantizerRecord("l", "a", "a_q", "int8 sym", "qdq", "a_c", 0.1, 0.0, "", 13)
    lo, hi = np.iinfo(ours).min, np.iinfo(ours).max
    t_lo, t_hi = np.iinfo(theirs).min, np.iinfo(theirs).max
    rng = np.random.default_rng(0)
    ref = np.concatenate([[lo, hi, lo, hi], rng.integers(lo, hi, 200, endpoint=True)])
    got = np.concatenate([[t_hi, t_lo, t_lo, t_hi], rng.integers(t_lo, t_hi, 200, endpoint=True)])
    ref, got = ref.astype(ours), got.astype(theirs)
    want = np.abs(ref.astype(np.int64) - got.astype(np.int64))
    assert np.array_equal(probes.lsb_distance(rec, ref, got), want)
