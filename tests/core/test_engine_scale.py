"""The engine's faster paths (issue 11) return what the straightforward ones return."""

from __future__ import annotations

import argparse
import math
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core import metrics
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, calibration, rewrite
from bitlens.core.errors import EngineError
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.builders import opset12_constant_weights


def deep_mlp(depth: int = 40, width: int = 16, old_ir_inputs: bool = False) -> onnx.ModelProto:
    """x[N,width] -> (MatMul(W_i) + b_i -> Relu) x depth -> y; with ``old_ir_inputs`` every
    initializer is also listed as a graph input, as IR < 4 exporters wrote them."""
    rng = np.random.default_rng(3)
    nodes, inits = [], []
    x = "x"
    for i in range(depth):
        inits += [
            numpy_helper.from_array(
                (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32), f"W{i}"
            ),
            numpy_helper.from_array(rng.normal(0, 0.1, width).astype(np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [x, f"W{i}"], [f"m{i}"], name=f"mm{i}"),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
            helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        x = f"r{i}"
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])]
    if old_ir_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    g = helper.make_graph(
        nodes,
        "deep_mlp",
        inputs,
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", width])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _one_by_one(model: onnx.ModelProto, info) -> None:
    """The straightforward removal the engine did before: rebuild the lists per weight
    (and per bias the engine feeds, rewrite.fed_constants)."""
    g = model.graph
    seen: set[str] = set()
    for layer in info.layers:
        for w in rewrite.fed_constants(layer):
            if w.name in seen:
                continue
            seen.add(w.name)
            if w.storage.name == "CONSTANT":
                idx = next(i for i, n in enumerate(g.node) if w.name in n.output)
                del g.node[idx]
            else:
                keep = [t for t in g.initializer if t.name != w.name]
                del g.initializer[:]
                g.initializer.extend(keep)
                inputs = [v for v in g.input if v.name != w.name]
                del g.input[:]
                g.input.extend(inputs)
            g.input.append(rewrite.value_info(w.name, w.dtype, w.shape))


def test_weights_to_inputs_in_one_pass_equals_removing_one_by_one() -> None:
    for proto in (deep_mlp(), deep_mlp(old_ir_inputs=True), opset12_constant_weights()):
        loaded = from_proto(proto)
        fast, slow = onnx.ModelProto(), onnx.ModelProto()
        fast.CopyFrom(loaded.proto)
        slow.CopyFrom(loaded.proto)
        rewrite.weights_to_inputs(fast, loaded.info)
        _one_by_one(slow, loaded.info)
        assert fast.SerializeToString() == slow.SerializeToString()
        lean, left_out = rewrite.copy_without_weights(loaded.proto, loaded.info)
        rewrite.weights_to_inputs(lean, loaded.info, left_out)
        assert lean.SerializeToString() == slow.SerializeToString()
        weights = {w.name for layer in loaded.info.layers for w in layer.weights}
        assert not weights & {t.name for t in fast.graph.initializer}
        assert [v.name for v in fast.graph.input].count("W0" if "W0" in weights else "w1") == 1


# -- streaming metrics ------------------------------------------------------------------------


def _close(got, want, rel: float = 1e-6) -> None:
    for f in ("mse", "sqnr_db", "cosine", "max_abs", "rel_l2"):
        a, b = getattr(got, f), getattr(want, f)
        assert a == pytest.approx(b, rel=rel, abs=1e-12), f


@pytest.mark.parametrize("n", [1, 7, metrics.CHUNK - 1, metrics.CHUNK + 1, 5 * metrics.CHUNK])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int64])
def test_streaming_error_equals_float64_to_float32_rounding(n: int, dtype) -> None:
    rng = np.random.default_rng(n)
    ref = (rng.standard_normal(n) * 5 + 2).astype(dtype)
    for noise in (1.0, 1e-2, 1e-5):
        approx = (ref + rng.standard_normal(n) * noise * (50 if dtype is np.int64 else 1)).astype(
            dtype
        )
        _close(metrics.tensor_error(ref, approx), metrics.tensor_error_f64(ref, approx))
    exact = metrics.tensor_error(ref, ref.copy())
    assert exact.sqnr_db == math.inf and exact.mse == 0.0 and exact.max_abs == 0.0


def test_streaming_error_edge_cases() -> None:
    zeros = np.zeros((3, 4), np.float32)
    ones = np.ones((3, 4), np.float32)
    for r, a in ((zeros, zeros), (zeros, ones), (ones, zeros), (np.zeros(0), np.zeros(0))):
        assert metrics.tensor_error(r, a) == metrics.tensor_error_f64(r, a)
    big = np.full(100, 3e20, np.float32)  # float32 squares overflow: the block is redone in f64
    _close(metrics.tensor_error(big, big * 0.5), metrics.tensor_error_f64(big, big * 0.5))
    with pytest.raises(ValueError, match="shape mismatch"):
        metrics.tensor_error(zeros, np.zeros((4, 3), np.float32))


def test_error_sums_over_pieces_equal_the_whole() -> None:
    rng = np.random.default_rng(5)
    pieces = [rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 5), (1, 3, 9), (40,))]
    approx = [
        p + np.float32(0.01) * rng.standard_normal(p.shape).astype(np.float32) for p in pieces
    ]
    sums = metrics.ErrorSums()
    for p, a in zip(pieces, approx, strict=True):
        sums.add(p, a)
    whole = metrics.tensor_error_f64(
        np.concatenate([p.ravel() for p in pieces]), np.concatenate([a.ravel() for a in approx])
    )
    _close(sums.result(), whole)


def test_streamed_calibration_statistics_equal_the_concatenated_ones(monkeypatch) -> None:
    monkeypatch.setattr(calibration, "MAX_SAMPLE", 1000)
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in ((3, 337), (1, 5), (2, 1111))]
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    stride = max(1, flat.size // 1000)
    st = calibration.ActivationStats.of(arrays, "a")
    assert (st.lo, st.hi) == (flat.min(), flat.max())
    np.testing.assert_array_equal(st.sample, flat[::stride])


# -- memory budget and feeds of different shapes ----------------------------------------------


def conv_any_width() -> onnx.ModelProto:
    """x[1,3,8,W] -> Conv -> Relu -> Conv -> y[1,4,8,W]: feeds may differ in width."""
    rng = np.random.default_rng(4)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (6, 3, 3, 3)).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.normal(0, 0.2, (4, 6, 3, 3)).astype(np.float32), "W2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["c1"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2"], ["y"], name="conv2", pads=[1] * 4),
    ]
    g = helper.make_graph(
        nodes,
        "conv_any_width",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, "W"])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _ragged_engine(budget: int | None, loaded=None) -> Engine:
    loaded = loaded or from_proto(conv_any_width())
    rng = np.random.default_rng(9)
    widths = (5, 9, 6, 12, 7, 3)
    samples = tuple({"x": rng.standard_normal((1, 3, 8, w)).astype(np.float32)} for w in widths)
    data = Dataset(samples, calibration=(0, 1, 2), evaluation=(3, 4, 5))
    return Engine(loaded, data, device="cpu", memory_budget=budget)


def test_feeds_of_different_shapes_and_a_zero_budget_give_the_same_numbers() -> None:
    in_memory = _ragged_engine(1 << 30)
    spilled = _ragged_engine(0, in_memory.model)
    plan = Plan.preset(in_memory.info, "W4A8")
    a, b = in_memory.evaluate(plan), spilled.evaluate(plan)
    assert a == b
    assert in_memory.memory_use()["spilled"] == 0 and in_memory.memory_use()["in_memory"] > 0
    use = spilled.memory_use()
    assert use == {"budget": 0, "in_memory": 0, "spilled": use["spilled"]} and use["spilled"] > 0
    # Against the straightforward computation: every evaluation feed's output, flattened and
    # concatenated, compared in float64.
    ref = in_memory.run_outputs(Plan(in_memory.info))["y"]
    got = in_memory.run_outputs(plan)["y"]
    want = metrics.tensor_error_f64(
        np.concatenate([r.ravel() for r in ref]), np.concatenate([g.ravel() for g in got])
    )
    _close(a.outputs["y"].error, want)
    assert a.layers["conv2"].accumulated == a.outputs["y"].error
    scratch = spilled._store.scratch_dir
    assert scratch is not None and os.path.isdir(scratch)
    spilled.close()
    assert not os.path.exists(scratch)


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(EngineError, match="memory budget"):
        _ragged_engine(-1)


# -- suffix evaluation --------------------------------------------------------------------------


def residual_two_outputs() -> onnx.ModelProto:
    """A residual block, a weight shared by two MatMuls, and a branch feeding only the second
    output::

        x -> MatMul(Wa) -> Relu -> r -> MatMul(Wb) -> Add(r) -> s -> MatMul(Ws) -> y
                                                  \\-> MatMul(Ws) -> Add(u, s) -> y2
        x -> MatMul(Wc) -> u  (only y2 depends on Wc; Ws is read by two layers)
    """
    rng = np.random.default_rng(6)

    def w(name: str) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal((8, 8)) / 3).astype(np.float32), name)

    nodes = [
        helper.make_node("MatMul", ["x", "Wa"], ["a"], name="mm_a"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "Wb"], ["b"], name="mm_b"),
        helper.make_node("Add", ["b", "r"], ["s"], name="skip"),
        helper.make_node("MatMul", ["s", "Ws"], ["y"], name="mm_s1"),
        helper.make_node("MatMul", ["x", "Wc"], ["u"], name="mm_c"),
        helper.make_node("MatMul", ["s", "Ws"], ["v"], name="mm_s2"),
        helper.make_node("Add", ["u", "v"], ["y2"], name="join"),
    ]
    g = helper.make_graph(
        nodes,
        "residual_two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8]),
            helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["N", 8]),
        ],
        [w("Wa"), w("Wb"), w("Ws"), w("Wc")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _run_sweep(engine: Engine, **kw):
    gen = engine.sweep(["int4 sym ch", "bin ch"], **kw)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return {(e.layer, e.format): e for e in stop.value}


@pytest.mark.parametrize("build", [residual_two_outputs, lambda: deep_mlp(12), conv_any_width])
def test_suffix_sweep_equals_the_full_model_sweep(build) -> None:
    loaded = from_proto(build())
    if build is conv_any_width:
        fast, full = _ragged_engine(0, loaded), _ragged_engine(1 << 30, loaded)
    else:
        data = Dataset.random(loaded.info, n=6, seed=1, dims={"N": 3})
        fast = Engine(loaded, data, device="cpu")
        full = Engine(loaded, data, device="cpu")
    a, b = _run_sweep(fast), _run_sweep(full, suffix_runs=False)
    assert not fast._wcache  # the sweep's weights, each used once, are not cached
    assert a.keys() == b.keys()
    for key in a:
        _close(a[key].output, b[key].output, rel=1e-5)
        assert a[key].bytes_after == b[key].bytes_after
    if build is residual_two_outputs:
        # y does not read Wc: its entries are read at y2, the output it reaches
        assert a[("mm_c", "bin ch")].at_output == "y2"
        assert math.isfinite(a[("mm_c", "bin ch")].output.sqnr_db)
        assert a[("mm_a", "bin ch")].at_output is None
        assert "mm_s1" not in fast._suffixes  # Ws is shared upstream-of-nothing but twice read
        assert fast._suffixes["mm_b"][1] == ("r",)  # the skip input comes from the float run


def test_min_max_calibration_keeps_no_sample_and_later_methods_get_the_same_ranges() -> None:
    loaded = from_proto(deep_mlp(4))
    data = Dataset.random(loaded.info, n=6, seed=2, dims={"N": 5})
    first = Engine(loaded, data, device="cpu")
    list(first.calibrate("minmax"))
    assert all(st.sample is None for st in first._stats.values())
    fmt = parse_format("int4 sym")
    list(first.calibrate("percentile"))  # statistics from the min-max pass are reused...
    fresh = Engine(loaded, data, device="cpu")
    list(fresh.calibrate("percentile"))
    for act in ("r0", "r1", "r2"):  # ...and get their sample when a method needs it
        assert first.activation_range(act, fmt) == fresh.activation_range(act, fmt)


def test_local_errors_in_one_graph_equal_one_graph_per_layer(monkeypatch) -> None:
    from bitlens.core.engine import localerrors

    loaded = from_proto(deep_mlp(6))
    data = Dataset.random(loaded.info, n=6, seed=3, dims={"N": 5})
    plan = Plan.preset(loaded.info, "W4A8")
    bulk = Engine(loaded, data, device="cpu").evaluate(plan)
    monkeypatch.setattr(localerrors, "BULK_LOCAL_MIN", 10**9)
    single = Engine(loaded, data, device="cpu")
    one_by_one = single.evaluate(plan)
    assert len(single._local_sessions) == 6
    for name, layer in bulk.layers.items():
        assert layer.local is not None
        _close(layer.local, one_by_one.layers[name].local)


def test_one_memory_budget_sets_the_activations_kept_and_the_allocation_guard(
    monkeypatch,
) -> None:
    from bitlens.cli.common import budget_of
    from bitlens.core import limits

    monkeypatch.delenv(limits.ENV_BUDGET, raising=False)
    monkeypatch.delenv(limits.LEGACY_ENV_MIB, raising=False)
    monkeypatch.setenv(limits.ENV_BUDGET, "12M")
    assert limits.memory_budget() == 12 << 20
    assert _ragged_engine(None).memory_budget == (12 << 20) // limits.ACTIVATION_SHARE
    with pytest.raises(limits.BitlensError, match=r"over the budget of 12\.0 MiB"):
        limits.check_budget(13 << 20, "a tensor")
    monkeypatch.delenv(limits.ENV_BUDGET)
    monkeypatch.setenv(limits.LEGACY_ENV_MIB, "8")  # the older setting, in MiB, still works
    assert limits.memory_budget() == 8 << 20
    monkeypatch.setenv(limits.LEGACY_ENV_MIB, "lots")
    with pytest.raises(limits.BitlensError, match="BITLENS_MEMORY_BUDGET_MIB='lots'"):
        limits.memory_budget()
    monkeypatch.delenv(limits.LEGACY_ENV_MIB)
    try:  # --memory-budget: a size, or a plain number of MiB; it wins over the environment
        monkeypatch.setenv(limits.ENV_BUDGET, "1G")
        assert budget_of(argparse.Namespace(memory_budget="64")) == (64 << 20) // 4
        assert limits.memory_budget() == 64 << 20
        assert budget_of(argparse.Namespace(memory_budget="2G")) == (2 << 30) // 4
        with pytest.raises(EngineError, match="--memory-budget='-3'"):
            budget_of(argparse.Namespace(memory_budget="-3"))
    finally:
        limits.set_memory_budget(None)
    assert limits.memory_budget() == 1 << 30


def test_layer_lookup_by_name_equals_the_scan() -> None:
    info = from_proto(deep_mlp(30)).info
    for layer in info.layers:
        assert info.layer(layer.name) is next(la for la in info.layers if la.name == layer.name)
    assert info.layer_names == tuple(la.name for la in info.layers)
    with pytest.raises(KeyError):
        info.layer("no such layer")
    plan = Plan(info)
    with pytest.raises(KeyError):
        plan["no such layer"]


def test_row_sqnr_equals_one_sqnr_per_row(monkeypatch) -> None:
    monkeypatch.setattr(metrics, "ROW_BLOCK", 50)  # several blocks of rows
    rng = np.random.default_rng(8)
    ref = rng.standard_normal((9, 3, 7)).astype(np.float32)
    approx = ref + np.float32(0.05) * rng.standard_normal(ref.shape).astype(np.float32)
    approx[4] = ref[4]  # an exact row: +inf
    ref[6] = 0.0  # a zero signal with noise: -inf
    got = metrics.row_sqnr_db(ref, approx)
    want = [metrics.sqnr_db(ref[j], approx[j]) for j in range(9)]
    assert got == pytest.approx(want, rel=1e-12)
    assert got[4] == math.inf and got[6] == -math.inf


def test_the_sweep_on_two_workers_equals_the_sweep_on_one(monkeypatch) -> None:
    from bitlens.core.engine import sweep

    loaded = from_proto(residual_two_outputs())
    data = Dataset.random(loaded.info, n=8, seed=4, dims={"N": 3})
    two = _run_sweep(Engine(loaded, data, device="cpu"))
    monkeypatch.setattr(sweep, "SWEEP_WORKERS", 1)
    one = _run_sweep(Engine(loaded, data, device="cpu"))
    assert two == one


def test_runs_two_at_a_time_give_the_same_evaluation_as_one_at_a_time(monkeypatch) -> None:
    from bitlens.core.engine import running

    loaded = from_proto(deep_mlp(6))
    rng = np.random.default_rng(6)
    samples = tuple({"x": rng.standard_normal((3, 16)).astype(np.float32)} for _ in range(7))
    data = Dataset(samples, calibration=(0, 1, 2), evaluation=(3, 4, 5, 6))  # odd windows too
    w8a8 = Plan.preset(loaded.info, "W8A8")
    one_layer = w8a8.with_choices({"mm3": LayerChoice.of("int2 sym ch", "uint8 asym")})
    plans = [w8a8, Plan.preset(loaded.info, "W4A8"), one_layer]  # bulk and one-layer locals
    fast = Engine(loaded, data, device="cpu")
    fast.run_workers = running.RUN_WORKERS  # a MatMul stack runs one feed at a time else
    two = [fast.evaluate(p) for p in plans]
    fast.close()
    monkeypatch.setattr(running, "RUN_WORKERS", 1)
    slow = Engine(loaded, data, device="cpu")
    assert [slow.evaluate(p) for p in plans] == two


@pytest.mark.parametrize("chunk", [40, metrics.CHUNK], ids=["row_by_row", "rows_per_block"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_sample_errors_in_one_float32_pass_equal_float64(monkeypatch, dtype, chunk) -> None:
    """Per-row SQNR and the whole tensor's figures from one pass over blocks of rows agree
    with the all-float64 computations (row_sqnr_db, tensor_error_f64) to float32 rounding,
    with exact rows, zero-signal rows and float32 overflow (redone in float64)."""
    monkeypatch.setattr(metrics, "CHUNK", chunk)  # 40: rows of 21 values one by one
    rng = np.random.default_rng(9)
    ref = rng.standard_normal((9, 3, 7)).astype(dtype)
    got = (ref + 0.05 * rng.standard_normal(ref.shape)).astype(dtype)
    got[4] = ref[4]  # exact: +inf
    ref[6] = 0.0  # zero signal with noise: -inf
    if dtype == np.float32:
        ref[2] *= np.float32(1e20)  # squares overflow float32
    errs = metrics.SampleErrors()
    errs.add(ref[:5], got[:5], 5)
    errs.add(ref[5:], got[5:], 4)
    total, rows = errs.result()
    want_rows = metrics.row_sqnr_db(ref, got)
    assert rows == pytest.approx(want_rows, rel=1e-5)
    assert rows[4] == math.inf and rows[6] == -math.inf
    want = metrics.tensor_error_f64(ref, got)
    for field in ("mse", "sqnr_db", "cosine", "max_abs", "rel_l2"):
        assert getattr(total, field) == pytest.approx(getattr(want, field), rel=1e-5), field


def test_sessions_on_the_shared_arena_compute_what_sessions_without_one_compute() -> None:
    from bitlens.core.engine import session
    from tests.core.engine_models import small_cnn

    loaded = from_proto(small_cnn())
    data = Dataset.random(loaded.info, n=4, seed=2)
    engine = Engine(loaded, data, device="cpu")
    sim, feeds = engine.simulation(Plan.preset(loaded.info, "W8A8"))
    assert session.shared_arena()  # this build of ONNX Runtime registers it
    shared = session.make_session(sim.model, "cpu")
    alone = session.make_session(sim.model, "cpu", arena=False)
    wanted = {i.name for i in shared.get_inputs()}
    feed = {k: v for k, v in {**data.samples[0], **feeds}.items() if k in wanted}
    outs = [o.name for o in shared.get_outputs()]
    for a, b in zip(shared.run(outs, feed), alone.run(outs, feed), strict=True):
        np.testing.assert_array_equal(a, b)


def test_target_ranges_from_the_float_run_equal_those_of_a_separate_run() -> None:
    """The min and max of the target's tensors gathered during the float reference run give
    the ranges (and evaluations) the separate statistics run gives."""
    from tests.core.test_targets import silu_net

    loaded = from_proto(silu_net())
    data = Dataset.random(loaded.info, n=6, seed=4)
    plan = Plan.preset(loaded.info, "W8A8")
    fast = Engine(loaded, data, device="cpu")
    slow = Engine(loaded, data, device="cpu")
    for _ in slow.prepare():
        pass
    slow._minmax = {}  # as before: every target tensor through target_stats.collect
    placed = fast.placement(plan)
    assert placed
    for q in placed.values():
        assert fast.target_range(q) == slow.target_range(q)
    assert fast.evaluate(plan) == slow.evaluate(plan)
    # a method that needs the values still gets them for a tensor no layer reads
    fast_p = Engine(loaded, data, device="cpu")
    for _ in fast_p.calibrate("percentile"):
        pass
    slow_p = Engine(loaded, data, device="cpu")
    for _ in slow_p.calibrate("percentile"):
        pass
    slow_p._minmax = {}
    assert fast_p.evaluate(plan) == slow_p.evaluate(plan)
