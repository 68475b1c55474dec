"""The evaluation engine against plain ONNX Runtime runs of rewritten models."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, bind, nchwc
from bitlens.core.errors import EngineError, PlanError
from bitlens.core.export.kernels import integer_kernel_layers
from bitlens.core.formats import fake_quantize, parse_format
from bitlens.core.formats.uniform import params_from_range
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.engine_models import mlp_with_fragile_layer, small_cnn, two_input_stateful


def make_engine(proto: onnx.ModelProto, n: int = 8, seed: int = 0) -> Engine:
    model = from_proto(proto)
    return Engine(model, Dataset.random(model.info, n=n, seed=seed), device="cpu")


def rewritten(engine: Engine, plan: Plan) -> onnx.ModelProto:
    """The plan applied the ordinary way: quantized weights baked in as initializers,
    real QuantizeLinear -> (Clip) -> DequantizeLinear / Cast pairs on activations, and the
    biases of integer-kernel layers rounded to s_x * s_w as the export stores them."""
    m = onnx.ModelProto()
    m.CopyFrom(engine.model.proto)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    new_nodes: list[onnx.NodeProto] = []
    extra: list[onnx.TensorProto] = []
    kernels = integer_kernel_layers(engine.info, plan, engine.placement(plan))
    for node in g.node:
        layer = next((la for la in engine.info.layers if la.outputs[0] == node.output[0]), None)
        choice = plan[layer.name] if layer else LayerChoice()
        if layer and choice.weight is not None:
            for w in layer.weights:
                value = fake_quantize(engine.model.weight(w.name), bind(choice.weight, w))
                inits[w.name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), w.name))
        if layer and choice.activation is not None:
            fmt = choice.activation
            for act in layer.activations:
                y = f"{act}_qdq_{layer.name}"
                if fmt.is_float:
                    new_nodes += [
                        helper.make_node("Cast", [act], [y + "_h"], to=TensorProto.FLOAT16),
                        helper.make_node("Cast", [y + "_h"], [y], to=TensorProto.FLOAT),
                    ]
                else:
                    bound = engine.bind_activation(layer, act, fmt)
                    lo, hi = engine.layer_range(act, bound, engine.placement(plan))
                    s, z = params_from_range(np.asarray(lo), np.asarray(hi), fmt)
                    zdt = np.int8 if fmt.signed else np.uint8
                    sn, zn = f"{y}_s", f"{y}_z"
                    extra += [  # per channel: ORT's 1-D per-axis form
                        numpy_helper.from_array(np.asarray(s, np.float32).ravel().squeeze(), sn),
                        numpy_helper.from_array(np.asarray(z, zdt).ravel().squeeze(), zn),
                    ]
                    axis = {} if bound.axis is None else {"axis": bound.axis}
                    if layer.name in kernels and layer.biases:  # stored as int32 at s_x * s_w
                        b = layer.biases[0].name
                        sw = engine.quantized(layer.weights[0], choice.weight).q.scale
                        step = (np.float32(s) * np.asarray(sw, np.float32)).astype(np.float64)
                        codes = np.rint(engine.model.weight(b).astype(np.float64) / step)
                        inits[b].CopyFrom(
                            numpy_helper.from_array((codes * step).astype(np.float32), b)
                        )
                    q = y + "_q"
                    new_nodes.append(helper.make_node("QuantizeLinear", [act, sn, zn], [q], **axis))
                    if fmt.bits < 8:
                        lo_n, hi_n = f"{y}_lo", f"{y}_hi"
                        extra += [
                            numpy_helper.from_array(np.asarray(fmt.qmin, zdt), lo_n),
                            numpy_helper.from_array(np.asarray(fmt.qmax, zdt), hi_n),
                        ]
                        new_nodes.append(helper.make_node("Clip", [q, lo_n, hi_n], [q + "c"]))
                        q = q + "c"
                    new_nodes.append(helper.make_node("DequantizeLinear", [q, sn, zn], [y], **axis))
                for i, name in enumerate(node.input):
                    if name == act:
                        node.input[i] = y
        new_nodes.append(node)
    # The deployment target's tensor quantizers: Q/DQ where the tensor is produced, read by
    # every consumer (the layers' own quantizers included).
    placed = engine.placement(plan)
    for node in new_nodes:
        for i, name in enumerate(node.input):
            if name in placed:
                node.input[i] = f"{name}_tq"
    ordered: list[onnx.NodeProto] = []
    graph_inputs = [i.name for i in g.input]
    for node in [None, *new_nodes]:  # None: the graph inputs, quantized first
        if node is not None:
            ordered.append(node)
        for t in graph_inputs if node is None else node.output:
            if t in placed:
                q = placed[t]
                lo, hi = engine.target_range(q)
                s, z = params_from_range(np.asarray(lo), np.asarray(hi), q.format)
                zdt = np.int8 if q.format.signed else np.uint8
                extra += [
                    numpy_helper.from_array(np.asarray(s, np.float32), f"{t}_ts"),
                    numpy_helper.from_array(np.asarray(z, zdt), f"{t}_tz"),
                ]
                ordered += [
                    helper.make_node("QuantizeLinear", [t, f"{t}_ts", f"{t}_tz"], [f"{t}_tc"]),
                    helper.make_node(
                        "DequantizeLinear", [f"{t}_tc", f"{t}_ts", f"{t}_tz"], [f"{t}_tq"]
                    ),
                ]
    del g.node[:]
    g.node.extend(ordered)
    g.initializer.extend(extra)
    return m


def plain_run(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no int8 fusion
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_outputs()[0].name
    return [sess.run([name], f)[0] for f in feeds]


PLANS = {
    "W8A8": ("int8 sym ch", "uint8 asym"),
    "W4A8": ("int4 sym ch", "uint8 asym"),
    "W4blk A-int4": ("int4 asym blk4", "int4 sym"),
    "W2 A16": ("int2 sym ch", "fp16"),
    "nf4": ("nf4 blk8", None),
    "ternary": ("tern ch", None),
    "binary": ("bin ch", None),
    "kmeans": ("km3 ch", "int8 asym"),
    "W8 A8 per channel": ("int8 sym ch", "uint8 asym ch"),
    "W4 A4 per channel": ("int4 sym ch", "int4 sym ch"),
}


@pytest.mark.parametrize("name", PLANS)
def test_engine_equals_plain_ort_of_rewritten_model(name: str, monkeypatch) -> None:
    # bit for bit against ORT_DISABLE_ALL's plain Conv: the engine's convs on the same path
    # (its NCHWc kernels agree within float reassociation: tests/core/test_engine_nchwc.py)
    monkeypatch.setattr(nchwc, "ENABLED", False)
    engine = make_engine(small_cnn())
    w, a = PLANS[name]
    plan = Plan.uniform(engine.info, w, a)
    got = engine.run_outputs(plan)["y"]
    feeds = [engine.data.samples[i] for i in engine.data.evaluation]
    want = plain_run(rewritten(engine, plan), feeds)
    for g, r in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, r)  # bit-exact


def test_float_plan_reproduces_the_reference_exactly() -> None:
    engine = make_engine(small_cnn())
    ev = engine.evaluate(Plan(engine.info))
    assert ev.outputs["y"].error.sqnr_db == math.inf
    for r in ev.layers.values():
        assert r.accumulated is not None and r.accumulated.max_abs == 0.0
        assert r.weight is None and r.local is None
        assert r.bytes_before == r.bytes_after
    assert ev.first_divergence == (None,) * 4


def test_local_error_is_the_layer_alone_from_float_inputs() -> None:
    """conv2 quantized alone; its local output equals ORT running conv2 on the float r1."""
    engine = make_engine(small_cnn())
    plan = Plan(engine.info, {"conv2": LayerChoice.of("int4 sym ch", "uint8 asym")})
    ev = engine.evaluate(plan)
    layer = engine.info.layer("conv2")
    lo, hi = engine.activation_range("r1", parse_format("uint8 asym"))
    s, z = params_from_range(np.asarray(lo), np.asarray(hi), parse_format("uint8 asym"))
    w = fake_quantize(
        engine.model.weight("W2"), bind(parse_format("int4 sym ch"), layer.weights[0])
    )
    g = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["r1", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
            helper.make_node("Conv", ["d", "W2"], ["c2"], pads=[1, 1, 1, 1]),
        ],
        "one",
        [helper.make_tensor_value_info("r1", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("c2", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.asarray(s, np.float32), "s"),
            numpy_helper.from_array(np.asarray(z, np.uint8), "z"),
            numpy_helper.from_array(w, "W2"),
        ],
    )
    one = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    one.ir_version = 9
    ref = engine._ensure_ref()
    float_r1 = [ref["r1"][i] for i in engine.data.evaluation]
    float_c2 = np.concatenate([ref["c2"][i] for i in engine.data.evaluation])
    local = np.concatenate(plain_run(one, [{"r1": x} for x in float_r1]))
    from bitlens.core.metrics import tensor_error

    want = tensor_error(float_c2, local)
    got = ev.layers["conv2"].local
    assert got is not None
    assert got.sqnr_db == pytest.approx(want.sqnr_db, abs=1e-4)
    # Only conv2 is quantized: conv1 has no local error, and its accumulated output is exact.
    assert ev.layers["conv1"].local is None
    assert ev.layers["conv1"].accumulated.sqnr_db == math.inf
    assert ev.layers["fc"].accumulated.sqnr_db < math.inf


def test_bytes_follow_the_format_accounting() -> None:
    engine = make_engine(small_cnn())
    ev = engine.evaluate(Plan.uniform(engine.info, "int4 sym ch"))
    conv1 = ev.layers["conv1"]
    assert conv1.bytes_before == 8 * 3 * 3 * 3 * 4
    assert conv1.bytes_after == (8 * 27 * 4 + 8 * 32 + 7) // 8
    assert ev.bytes_after == sum(r.bytes_after for r in ev.layers.values())
    assert ev.compression == pytest.approx(ev.bytes_before / ev.bytes_after)
    assert 4.0 < ev.avg_bits < 6.0


def test_error_grows_as_bits_shrink() -> None:
    engine = make_engine(small_cnn())
    sqnr = [
        engine.evaluate(Plan.uniform(engine.info, f"int{b} sym ch")).outputs["y"].error.sqnr_db
        for b in (8, 6, 4, 3, 2)
    ]
    assert sqnr == sorted(sqnr, reverse=True)
    assert sqnr[0] > 35 and sqnr[-1] < 15


def test_sweep_singles_out_the_planted_fragile_layer() -> None:
    engine = make_engine(mlp_with_fragile_layer(), n=16)
    gen = engine.sweep(["int4 sym ch"])
    progress = []
    try:
        while True:
            progress.append(next(gen))
    except StopIteration as stop:
        entries = stop.value
    assert [p.done for p in progress if "sweep" in p.message] == [1, 2, 3]
    assert entries[0].layer == "mm_b"
    assert entries[0].output.sqnr_db < entries[1].output.sqnr_db - 6


def test_sweep_stops_promptly_when_closed() -> None:
    engine = make_engine(mlp_with_fragile_layer())
    gen = engine.sweep(["int8 sym ch", "int4 sym ch"])
    for p in gen:
        if "sweep" in p.message:
            break
    gen.close()  # a cancelled sweep must not raise or keep running
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse", "entropy"])
def test_calibration_on_multi_input_stateful_model(method: str) -> None:
    engine = make_engine(two_input_stateful(), n=200)
    steps = list(engine.calibrate(method))
    assert steps[-1].done == steps[-1].total
    ev = engine.evaluate(Plan.preset(engine.info, "W8A8"))
    assert set(ev.outputs) == {"y", "h_out"}
    assert 20 < ev.outputs["y"].error.sqnr_db < math.inf
    lo, hi = engine.activation_range("h", parse_format("uint8 asym"))
    ref = engine._ensure_ref()
    h = np.concatenate([ref["h"][i] for i in engine.data.calibration])
    assert h.min() <= lo < hi <= h.max()


def test_dynamic_activations_take_each_inputs_range() -> None:
    engine = make_engine(small_cnn())
    static = Plan(engine.info, {"conv2": LayerChoice.of(None, "uint8 asym")})
    dynamic = Plan(engine.info, {"conv2": LayerChoice.of(None, "uint8 asym", dynamic=True)})
    e_static = engine.evaluate(static).layers["conv2"].local
    e_dyn = engine.evaluate(dynamic).layers["conv2"].local
    assert e_static is not None and e_dyn is not None
    assert e_static.sqnr_db != e_dyn.sqnr_db
    assert e_dyn.sqnr_db > 25


def test_plan_for_another_model_is_refused() -> None:
    a, b = make_engine(small_cnn()), make_engine(small_cnn(seed=1))
    with pytest.raises(EngineError, match="different model"):
        a.evaluate(Plan(b.info))


def test_activation_format_on_gemm_weight_only_layer_is_validated() -> None:
    engine = make_engine(small_cnn())
    with pytest.raises(PlanError, match="nosuch"):
        Plan(engine.info, {"nosuch": LayerChoice.of("int8 sym")})


def test_weight_cache_and_session_reuse() -> None:
    engine = make_engine(small_cnn())
    # Target "none": W8A8 and W4A8 then have the same quantizer structure (for "ort-cpu" the
    # int8 layers' outputs get quantizers too, int4 layers' do not: no integer kernel).
    engine.evaluate(Plan.preset(engine.info, "W8A8").with_target("none"))
    n_sessions = len(engine._sessions)
    engine.evaluate(Plan.preset(engine.info, "W4A8").with_target("none"))
    assert len(engine._sessions) == n_sessions
    cached = {fmt for _, fmt in engine._wcache}
    assert {"int8 sym ch0", "int4 sym ch0"} <= cached
    w2 = engine._wcache[("W2", "int4 sym ch0")].values
    assert (
        engine.quantized_weight(engine.info.layer("conv2").weights[0], parse_format("int4 sym ch"))
        is w2
    )


def test_nan_in_the_float_model_is_named() -> None:
    """x -> Log -> MatMul: negative inputs make NaN in the float model itself."""
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        [
            helper.make_node("Log", ["x"], ["l"], name="log"),
            helper.make_node("MatMul", ["l", "W"], ["y"], name="mm"),
        ],
        "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(np.ones((4, 2), np.float32), "W")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    engine = make_engine(m)
    with pytest.raises(EngineError, match="NaN or infinite values in 'l'"):
        engine.evaluate(Plan(engine.info))


def test_fp16_activation_quantization_is_refused_clearly() -> None:
    from onnx import TensorProto, helper, numpy_helper

    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm16")],
        "fp16",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["N", 2])],
        [numpy_helper.from_array(np.ones((4, 2), np.float16), "W")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    engine = make_engine(m)
    ev = engine.evaluate(Plan.uniform(engine.info, "int4 sym ch"))  # fp16 weights quantize fine
    assert ev.layers["mm16"].weight.sqnr_db < 30
    # a uniform plan leaves float16 activations as they are (half_activations.py) ...
    assert not Plan.uniform(engine.info, None, "uint8 asym").choices
    # ... and a layer asked for one explicitly is refused with the reason
    asked = Plan(engine.info, {"mm16": LayerChoice.of(None, "uint8 asym")})
    with pytest.raises(EngineError, match="float32 activations; 'x' is float16"):
        engine.evaluate(asked)


def test_per_channel_activations_fit_each_channel() -> None:
    """Channels of conv1's output (relu'd, feeding conv2) span different ranges: a range per
    channel quantizes them more finely than one range for all."""
    engine = make_engine(small_cnn(), n=16)
    layer = engine.info.layer("conv2")
    fmt = parse_format("uint4 asym ch")
    bound = engine.bind_activation(layer, "r1", fmt)
    assert bound.axis == 1
    lo, hi = engine.activation_range("r1", bound)
    assert lo.shape == hi.shape == (1, 8, 1, 1) and len(np.unique(hi)) > 1
    ref = engine._ensure_ref()
    r1 = np.concatenate([ref["r1"][i] for i in engine.data.calibration])
    assert np.allclose(hi.ravel(), r1.max(axis=(0, 2, 3)))  # min-max per channel
    per_tensor = engine.evaluate(Plan(engine.info, {"conv2": LayerChoice.of(None, "uint4 asym")}))
    per_channel = engine.evaluate(Plan(engine.info, {"conv2": LayerChoice.of(None, fmt)}))
    assert per_channel.layers["conv2"].local.sqnr_db > per_tensor.layers["conv2"].local.sqnr_db
    assert per_channel.layers["conv2"].activation_format == "uint4 asym ch"
    for method in ("percentile", "mse", "entropy"):
        list(engine.calibrate(method))
        lo_m, hi_m = engine.activation_range("r1", bound)
        assert lo_m.shape == (1, 8, 1, 1) and np.all(hi_m <= hi + 1e-6)


def test_accumulated_errors_are_reused_upstream_of_a_change(monkeypatch) -> None:
    """After changing fc (the last layer) only fc's output is measured again; a tiny
    cache still gives every layer its result (evicting nothing this evaluation needs)."""
    from bitlens.core.engine import engine as engine_mod

    engine = make_engine(small_cnn())
    first = engine.evaluate(Plan.preset(engine.info, "W8A8"))
    measured: list[tuple[int, ...]] = []  # shapes compared, one per evaluation row or feed
    real = engine_mod.metrics.ErrorSums.add
    monkeypatch.setattr(
        engine_mod.metrics.ErrorSums,
        "add",
        lambda self, r, a: measured.append(np.shape(r)) or real(self, r, a),
    )
    real_rows = engine_mod.metrics.ErrorSums.add_rows
    monkeypatch.setattr(
        engine_mod.metrics.ErrorSums,
        "add_rows",
        lambda self, r, a: measured.append(np.shape(r)) or real_rows(self, r, a),
    )
    real_stacked = engine_mod.metrics.add_stacked  # small outputs, several at once
    monkeypatch.setattr(
        engine_mod.metrics,
        "add_stacked",
        lambda items, rows: measured.extend(np.shape(r) for _, r, _ in items)
        or real_stacked(items, rows),
    )
    plan = Plan.preset(engine.info, "W8A8").with_choices({"fc": LayerChoice.of("int2 sym ch")})
    second = engine.evaluate(plan)
    assert second.layers["conv1"].accumulated == first.layers["conv1"].accumulated
    assert second.layers["fc"].accumulated != first.layers["fc"].accumulated
    sizes = [int(np.prod(s)) for s in measured]
    conv_outputs = {8 * 8 * 8, 16 * 8 * 8}  # conv1's and conv2's outputs, per row and per feed
    assert measured and not (conv_outputs | {4 * n for n in conv_outputs}) & set(sizes)
    # fc's output (accumulated row by row, local) and the output y, 4 evaluation samples each
    assert sum(n for n in sizes if n in (10, 4 * 10)) >= 3 * 4 * 10
    monkeypatch.setattr(engine_mod, "ACC_CACHE_ENTRIES", 1)
    third = engine.evaluate(Plan.preset(engine.info, "W4A8"))
    assert all(third.layers[n].accumulated is not None for n in ("conv1", "conv2", "fc"))
