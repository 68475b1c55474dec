"""The engine's per-tensor integer quantizers run as QuantizeLinear -> Clip ->
DequantizeLinear on shifted uint8 codes (kind ``int-q``, int_activation.qdq_nodes), and give
exactly the values of the six-op float chain (``int``) and of numpy."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, quantizers
from bitlens.core.engine.session import make_session, session_options
from bitlens.core.formats import parse_format
from bitlens.core.formats.families import int_activation
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.engine_models import small_cnn
from tests.core.test_targets import silu_net

FORMATS = ["uint8 asym", "int8 sym", "int8 asym", "uint4 asym", "int4 sym", "int2 sym", "int7 asym"]


def _both(shape: tuple[int, ...]) -> onnx.ModelProto:
    """x -> int chain -> a ;  x -> int-q nodes -> b  (parameters fed as inputs)."""
    chain, io_a = quantizers.build("int", "x", "a", "pa")
    qdq, io_b = quantizers.build(quantizers.QDQ_KIND, "x", "b", "pb")
    params = [*io_a.params, *io_b.params]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)]
    inputs += [helper.make_tensor_value_info(p, TensorProto.FLOAT, []) for p in params]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "ab"]
    graph = helper.make_graph([*chain, *qdq], "qdq", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("name", FORMATS)
def test_qdq_quantizer_equals_the_float_chain_and_numpy(name: str) -> None:
    """Random values, exact half-way points of the grid (round half to even), values far
    outside the range, zeros and infinities."""
    fmt = parse_format(name)
    lo, hi = -1.3, 2.1
    fa = quantizers.param_feeds("int", "pa", fmt, lo, hi)
    fb = quantizers.param_feeds(quantizers.QDQ_KIND, "pb", fmt, lo, hi)
    s = np.float32(fa["pa__scale"])
    rng = np.random.default_rng(0)
    halves = ((np.arange(-300, 300) + 0.5) * s).astype(np.float32)
    x = np.concatenate([
        rng.normal(0, 1.5, 2000).astype(np.float32), halves,
        np.float32([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf, 3.4e38, 1e-40]),
    ])  # fmt: skip
    sess = ort.InferenceSession(
        _both(x.shape).SerializeToString(), session_options(), providers=["CPUExecutionProvider"]
    )
    a, b = sess.run(["a", "b"], {"x": x, **fa, **fb})
    with np.errstate(over="ignore"):  # 1e30 / s
        want = quantizers.numpy_reference("int", x, fa, "pa")
    np.testing.assert_array_equal(a.view(np.uint32), want.view(np.uint32))
    np.testing.assert_array_equal(b.view(np.uint32), want.view(np.uint32))


def test_formats_past_256_codes_or_per_channel_keep_the_chain() -> None:
    for name in ("int16 sym", "uint8 asym ch"):
        assert not int_activation.qdq_fits(parse_format(name))
        assert quantizers.engine_kind(parse_format(name), False, 17) == "int"
    assert quantizers.engine_kind(parse_format("uint8 asym"), False, 17) == quantizers.QDQ_KIND
    assert quantizers.engine_kind(parse_format("uint8 asym"), False, 11) == "int"  # uint8 Clip
    assert quantizers.engine_kind(parse_format("uint8 asym"), True, 17) == "int-dyn"


def _plans(info) -> list[Plan]:
    """W8A8 (target quantizers, layer quantizers left out), and layers moved to 4-, 2- and
    16-bit, signed, per-channel, fp16 and dynamic activations."""
    base = Plan.preset(info, "W8A8")
    names = [la.name for la in info.layers]
    first, mid, last = names[0], names[len(names) // 2], names[-1]
    return [
        base,
        base.with_choices({mid: LayerChoice.of("int8 sym ch", "int8 sym")}),
        base.with_choices({first: LayerChoice.of("int4 sym ch", "uint4 asym")}),
        base.with_choices({mid: LayerChoice.of("int4 sym ch", "int2 sym")}),
        base.with_choices({mid: LayerChoice.of("int8 sym ch", "int16 sym")}),
        base.with_choices({last: LayerChoice.of("int8 sym ch", "uint8 asym ch")}),
        base.with_choices({mid: LayerChoice.of("int8 sym ch", "fp16")}),
        base.with_choices({mid: LayerChoice.of("int8 sym ch", "uint8 asym", dynamic=True)}),
        base.with_target("none"),
        Plan.preset(info, "W4A8"),
    ]


@pytest.mark.parametrize("case", ["cnn", "target_quantizers"])
def test_engine_numbers_equal_those_of_the_float_chain(case: str) -> None:
    loaded = from_proto(small_cnn() if case == "cnn" else silu_net())
    data = Dataset.random(loaded.info, n=4, seed=3, dims={"N": 2})
    fast = Engine(loaded, data, device="cpu")
    slow = Engine(loaded, data, device="cpu")
    slow.qdq_quantizers = False
    for plan in _plans(loaded.info):
        assert fast.evaluate(plan) == slow.evaluate(plan)
        got, want = fast.run_outputs(plan), slow.run_outputs(plan)
        for name in want:
            for g, w in zip(got[name], want[name], strict=True):
                np.testing.assert_array_equal(g, w)
    # the fast graph really runs Q/DQ nodes, the slow one none
    ops = lambda e: {n.op_type for n in e.simulation(_plans(loaded.info)[0])[0].model.graph.node}  # noqa: E731
    assert "QuantizeLinear" in ops(fast) and "Round" not in ops(fast)
    assert "QuantizeLinear" not in ops(slow) and "Round" in ops(slow)


def test_engine_sessions_do_not_fuse_the_quantizers_into_integer_kernels() -> None:
    """a, b -> int-q each -> Add -> int-q -> y. ORT fuses DQ -> Add -> Q into QLinearAdd,
    whose requantization differs from the float simulation (13595 of 10^6 values here);
    engine sessions turn QDQ fusion off (session.disable_quant_qdq)."""
    kind = quantizers.QDQ_KIND
    nodes, params = [], []
    for x, y, p in (("a", "qa", "pa"), ("b", "qb", "pb"), ("s", "y", "pc")):
        more, io = quantizers.build(kind, x, y, p)
        nodes += more
        params += io.params
    nodes.insert(len(nodes) - 5, helper.make_node("Add", ["qa", "qb"], ["s"]))
    shape = [1000, 1000]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in "ab"]
    inputs += [helper.make_tensor_value_info(p, TensorProto.FLOAT, []) for p in params]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)
    model = helper.make_model(
        helper.make_graph(nodes, "add", inputs, [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    fmt = parse_format("uint8 asym")
    feeds = {
        **quantizers.param_feeds(kind, "pa", fmt, -1.1, 2.3),
        **quantizers.param_feeds(kind, "pb", fmt, -0.7, 1.9),
        **quantizers.param_feeds(kind, "pc", fmt, -1.5, 3.7),
    }
    rng = np.random.default_rng(0)
    a, b = (rng.normal(0, 1, shape).astype(np.float32) for _ in range(2))
    got = make_session(model, "cpu").run(["y"], {"a": a, "b": b, **feeds})[0]
    ref = quantizers.numpy_reference
    s = ref(kind, a, feeds, "pa") + ref(kind, b, feeds, "pb")
    np.testing.assert_array_equal(got, ref(kind, s, feeds, "pc"))
