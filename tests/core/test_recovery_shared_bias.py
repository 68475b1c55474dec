"""Bias correction on a bias that several layers read: each reader gets its own corrected
bias (the shift it cancels is its own weight's rounding), in the engine and in the exported
file alike, and each equals a float64 reference computed here from the float model's
activations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from onnx import helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery import Recovery
from bitlens.core.results import drain
from tests import builders
from tests.core.as_written import assert_file_is_engine, plain_convs  # noqa: F401 (a fixture)

# bit for bit against ORT_DISABLE_ALL's plain Conv (as_written.plain_convs)
pytestmark = pytest.mark.usefixtures("plain_convs")

LAYERS = ("c1", "c2", "g1", "g2")
BIAS_OF = {"c1": "cb", "c2": "cb", "g1": "gb", "g2": "gb"}
INPUT_OF = {"c1": "r0", "c2": "r1", "g1": "flat", "g2": "r3"}


def shared_bias_model(biases: dict[str, np.ndarray] | None = None,
                      weights_of: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """Two Convs reading one bias ``cb``, two Gemms reading one bias ``gb``::

        x[N,4,6,6] -> Relu -> Conv(c1.w, cb) -> Relu -> Conv(c2.w, cb) -> Relu -> Flatten
                   -> Gemm(g1.w, gb) -> Relu -> Gemm(g2.w, gb) -> y[N,10]

    ``biases`` gives each layer its own bias instead (the expected model, built by hand),
    ``weights_of`` replaces weights.
    """
    w = {"c1.w": builders.weights((4, 4, 3, 3), seed=61),
         "c2.w": builders.weights((4, 4, 3, 3), seed=62),
         "g1.w": builders.weights((10, 144), seed=63),
         "g2.w": builders.weights((10, 10), seed=64), **(weights_of or {})}  # fmt: skip
    b = {"cb": builders.bias(4, seed=65), "gb": builders.bias(10, seed=66)}
    name = {n: BIAS_OF[n] for n in LAYERS}
    if biases is not None:
        b = {f"{n}.b": v for n, v in biases.items()}
        name = {n: f"{n}.b" for n in LAYERS}
    nodes = [
        helper.make_node("Relu", ["x"], ["r0"]),
        helper.make_node("Conv", ["r0", "c1.w", name["c1"]], ["c1"], name="c1", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "c2.w", name["c2"]], ["c2"], name="c2", pads=[1] * 4),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Flatten", ["r2"], ["flat"]),
        helper.make_node("Gemm", ["flat", "g1.w", name["g1"]], ["g1"], name="g1", transB=1),
        helper.make_node("Relu", ["g1"], ["r3"]),
        helper.make_node("Gemm", ["r3", "g2.w", name["g2"]], ["y"], name="g2", transB=1),
    ]
    inits = [builders.init(k, v) for k, v in {**w, **b}.items()]
    g = helper.make_graph(
        nodes, "shared_bias",
        [helper.make_tensor_value_info("x", builders.FLOAT, ["N", 4, 6, 6])],
        [helper.make_tensor_value_info("y", builders.FLOAT, ["N", 10])], inits,
    )  # fmt: skip
    return builders.model(g)


@pytest.fixture(scope="module")
def engine() -> Engine:
    rng = np.random.default_rng(7)
    feeds = tuple({"x": rng.normal(0.3, 1.0, (4, 4, 6, 6)).astype(np.float32)} for _ in range(8))
    return Engine(from_proto(shared_bias_model()), Dataset(feeds, source="test"), device="cpu")


def _plan(engine: Engine, fmt: str, act: str | None = None) -> Plan:
    return Plan(engine.info, {n: LayerChoice.of(fmt, act, False, "bias_correction")
                              for n in LAYERS})  # fmt: skip


def _reference_biases(engine: Engine, plan: Plan) -> dict[str, np.ndarray]:
    """b - E[(W_q - W) x] per layer in float64: the mean over the calibration samples (and
    every output position of a conv, zero padding included) of the rounding's output."""
    proto = shared_bias_model()
    del proto.graph.output[:]
    proto.graph.output.extend(
        helper.make_tensor_value_info(t, builders.FLOAT, None) for t in INPUT_OF.values()
    )
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = list(INPUT_OF.values())
    acts = {t: [] for t in names}
    for i in engine.data.calibration:
        for t, v in zip(names, sess.run(names, engine.data.samples[i]), strict=True):
            acts[t].append(v.astype(np.float64))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    out = {}
    for n in LAYERS:
        layer = engine.info.layer(n)
        w = inits[f"{n}.w"].astype(np.float64)
        dw = engine.quantized_weight(layer.weights[0], plan[n].weight).astype(np.float64) - w
        x = np.concatenate(acts[INPUT_OF[n]])
        if layer.op_type == "Conv":  # mean of conv(x, dW) over samples and positions
            xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
            patches = sliding_window_view(xp, (3, 3), axis=(2, 3))  # N, C, H, W, 3, 3
            shift = np.einsum("nchwij,ocij->o", patches, dw) / (x.shape[0] * 36)
        else:  # Gemm, transB: y = x dW^T
            shift = dw @ x.mean(axis=0)
        out[n] = inits[BIAS_OF[n]].astype(np.float64) - shift
    return out


def test_each_reader_gets_its_own_correction(engine: Engine) -> None:
    plan = _plan(engine, "int3 sym ch")
    want = _reference_biases(engine, plan)
    recs = {n: engine.recovery.result(engine.info.layer(n), plan[n].weight, Recovery.BIAS)
            for n in LAYERS}  # fmt: skip
    for n in LAYERS:
        np.testing.assert_allclose(recs[n].bias, want[n], rtol=1e-6, atol=1e-7, err_msg=n)
    # the readers of one bias need different corrections (else this test shows nothing)
    assert np.max(np.abs(recs["c1"].bias - recs["c2"].bias)) > 1e-3
    assert np.max(np.abs(recs["g1"].bias - recs["g2"].bias)) > 1e-3
    # the engine runs the model in which every layer has its own corrected bias
    by_hand = shared_bias_model(
        {n: r.bias for n, r in recs.items()}, {f"{n}.w": r.weight for n, r in recs.items()}
    )
    sess = ort.InferenceSession(by_hand.SerializeToString(), providers=["CPUExecutionProvider"])
    got = engine.run_outputs(plan)["y"]
    for i, y in zip(engine.data.evaluation, got, strict=True):
        np.testing.assert_allclose(y, sess.run(None, engine.data.samples[i])[0],
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


@pytest.mark.parametrize(("fmt", "act"), [
    ("int3 sym ch", None),  # float biases: one corrected copy per reader
    ("int8 sym ch", "uint8 asym"),  # integer kernels: each reader's corrected int32 bias
])  # fmt: skip
def test_export_equals_engine(engine: Engine, tmp_path: Path, fmt: str, act: str | None) -> None:
    plan = _plan(engine, fmt, act)
    result = drain(export(engine, plan, tmp_path / "m.onnx", ExportOptions()))
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
    assert_file_is_engine(engine, plan, result.path)  # the file is the simulation
    if act is None:  # the file holds each reader's corrected bias
        g = onnx.load(str(result.path)).graph
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        nodes = {n.name: n for n in g.node}
        for n in LAYERS:
            rec = engine.recovery.result(engine.info.layer(n), plan[n].weight, Recovery.BIAS)
            np.testing.assert_array_equal(inits[nodes[n].input[2]], rec.bias, err_msg=n)


def test_rounded_bias_follows_the_bias_value(engine: Engine, monkeypatch) -> None:
    """The int32-grid copy of an integer-kernel layer's bias is cached; a different float
    bias fed under the same choice and activation scale gets its own rounding, not the
    cached one (the cache key holds the value)."""
    from bitlens.core.engine.kernel_bias import dequantized, int32_grid
    from bitlens.core.engine.rewrite import act_prefix

    plan = Plan(engine.info, {n: LayerChoice.of("int8 sym ch", "uint8 asym") for n in LAYERS})
    placed = engine.placement(plan)
    rounded = engine._rounded(plan)
    assert "g1" in rounded  # an integer kernel whose bias the engine rounds
    feed, n_out = rounded["g1"]
    first = engine._plan_feeds(plan, placed)[feed]
    plain_feeds = engine._weight_feeds
    monkeypatch.setattr(engine, "_weight_feeds", lambda p, made=None: {
        k: (2 * v if k == feed else v) for k, v in plain_feeds(p, made).items()
    })  # fmt: skip
    feeds = engine._plan_feeds(plan, placed)
    layer = engine.info.layer("g1")
    act = np.float32(feeds[f"{act_prefix('g1', 0)}__scale"].reshape(()))
    wscale = np.asarray(engine.quantized(layer.weights[0], plan["g1"].weight).q.scale, np.float32)
    bias = 2 * np.asarray(engine.model.weight(layer.biases[0]), np.float32)
    grid = int32_grid(bias, act, wscale, n_out)
    assert not isinstance(grid, str)
    np.testing.assert_array_equal(feeds[feed], dequantized(*grid))
    assert not np.array_equal(feeds[feed], first)
