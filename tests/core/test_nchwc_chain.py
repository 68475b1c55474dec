"""Fed-filter convolutions chained in the blocked (NCHWc) layout
(bitlens.core.engine.nchwc_chain): no reorder round trip between convs, Relus fused into
the convs, and the very values of the unchained graph, bit for bit."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bitlens.core.engine import nchwc, nchwc_chain
from bitlens.core.engine.session import make_session

BLOCK = nchwc.block_size()
needs_nchwc = pytest.mark.skipif(
    BLOCK is None, reason="ONNX Runtime has no NCHWc kernels on this machine"
)

B = BLOCK or 8
C1, C2 = 2 * B, B + B // 2  # both read through a reorder ("bibo"); C2 a partial block
SHAPES = {
    "wa": (C1, 3, 3, 3), "wb": (C1, C1, 1, 1), "wc": (C2, C1, 3, 3),
    "wd": (C2, C2, 3, 3), "we": (C2, C2, 5, 6), "wf": (C2, C2, 1, 1),
}  # fmt: skip


def _model(nodes, inputs, outputs) -> onnx.ModelProto:
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    return model


def _chained(model: onnx.ModelProto) -> onnx.GraphProto:
    """nchwc.rewrite's graph of ``model``, chained."""
    assert BLOCK is not None
    rewritten = nchwc.rewrite(model, BLOCK)
    assert rewritten is not None
    return nchwc_chain.chain_blocked(rewritten[0]).graph


def residual_net() -> onnx.ModelProto:
    """Every filter fed (the engine's simulation graphs feed them)::

        x[2,3,9,11] -> conv a 3x3 -> Relu r0 -> conv b 1x1 -> Add(r0, .) -> Relu s0
          -> conv c 3x3 stride 2 (C2 ch) -> Relu r1 -> conv d 3x3 -> Add(r1, .) -> Relu s1
          -> conv e 5x6 valid (1x1 out) -> Add(s1, .) broadcast -> Relu s2
          -> conv f 1x1 -> ReduceMean -> y;   s0 also an output (a layer output)

    The broadcast Add must stay in NCHW (its two inputs have different sizes)."""
    conv = lambda x, w, y, **kw: helper.make_node("Conv", [x, w], [y], name=y, **kw)  # noqa: E731
    nodes = [
        conv("x", "wa", "a", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r0"], name="r0"),
        conv("r0", "wb", "b"),
        helper.make_node("Add", ["r0", "b"], ["t0"], name="t0"),
        helper.make_node("Relu", ["t0"], ["s0"], name="s0"),
        conv("s0", "wc", "c", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r1"], name="r1"),
        conv("r1", "wd", "d", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["r1", "d"], ["t1"], name="t1"),
        helper.make_node("Relu", ["t1"], ["s1"], name="s1"),
        conv("s1", "we", "e"),
        helper.make_node("Add", ["s1", "e"], ["t2"], name="t2"),
        helper.make_node("Relu", ["t2"], ["s2"], name="s2"),
        conv("s2", "wf", "f"),
        helper.make_node("ReduceMean", ["f"], ["y"], name="y", axes=[2, 3], keepdims=0),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 11])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in SHAPES.items()]
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("s0", TensorProto.FLOAT, None),
    ]
    return _model(nodes, inputs, outputs)


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((2, 3, 9, 11)).astype(np.float32)}
    for name, shape in SHAPES.items():
        feeds[name] = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
    return feeds


@needs_nchwc
def test_chained_convs_equal_the_unchained_graph_bit_for_bit(monkeypatch) -> None:
    model = residual_net()
    feeds = _feeds()
    chained = make_session(model, "cpu", blocked_chains=True)
    monkeypatch.setattr(nchwc_chain, "ENABLED", False)
    unchained = make_session(model, "cpu", blocked_chains=True)
    assert isinstance(chained, nchwc.NchwcSession) and isinstance(unchained, nchwc.NchwcSession)
    for got, want in zip(
        chained.run(["y", "s0"], feeds), unchained.run(["y", "s0"], feeds), strict=True
    ):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want)
    # a new format's filter: still the same values
    feeds["wd"] = np.round(feeds["wd"] * 8) / 8
    monkeypatch.setattr(nchwc_chain, "ENABLED", True)
    got = chained.run(["y"], feeds)[0]
    assert np.array_equal(got, unchained.run(["y"], feeds)[0])


@needs_nchwc
def test_no_reorder_round_trip_between_convs() -> None:
    assert BLOCK is not None
    rewritten = nchwc.rewrite(residual_net(), BLOCK)
    assert rewritten is not None
    before = rewritten[0]
    ops = lambda m: [(n.domain, n.op_type) for n in m.graph.node]  # noqa: E731
    assert ops(before).count((nchwc.DOMAIN, "ReorderInput")) == 5  # every conv but the first
    after = nchwc_chain.chain_blocked(onnx.ModelProto.FromString(before.SerializeToString()))
    g = after.graph
    producer = {o: n for n in g.node for o in n.output}
    for node in g.node:
        if node.op_type == "ReorderInput":
            src = producer.get(node.input[0])
            while src is not None and src.op_type == "Relu":
                src = producer.get(src.input[0])
            assert src is None or src.op_type != "ReorderOutput", node.name
    # conv e's input is s1 reordered: the broadcast Add reads both sides in NCHW, so s1
    # is needed in NCHW there; every other conv reads a blocked tensor directly
    assert ops(after).count((nchwc.DOMAIN, "ReorderInput")) == 1
    t2 = next(n for n in g.node if n.output[0] == "t2")
    assert list(t2.input) == ["s1", "e"]
    assert {"y", "s0"} <= {o for n in g.node for o in n.output}  # still NCHW outputs
    # the Relus after conv a and conv c (their blocked twins: the NCHW ones are reordered
    # copies now) join their convs
    fused = [n.name for n in g.node if any(a.name == "activation" for a in n.attribute)]
    assert fused == [f"a{nchwc.SUFFIX}", f"c{nchwc.SUFFIX}"]


@needs_nchwc
def test_a_relu_read_only_by_the_next_conv_joins_its_conv(monkeypatch) -> None:
    """x -> conv a -> Relu -> conv b -> y: the Relu becomes conv a's activation, and no
    reorder is left between the convs; same values as unchained."""
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Conv", ["r", "wb"], ["y"]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 11])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPES[n]) for n in ("wa", "wb")]
    model = _model(nodes, inputs, [helper.make_tensor_value_info("y", 1, None)])
    g = _chained(model)
    assert [n.op_type for n in g.node] == ["Conv", "Conv", "ReorderOutput"]
    assert [a.s for a in g.node[0].attribute if a.name == "activation"] == [b"Relu"]
    feeds = {k: v for k, v in _feeds().items() if k in ("x", "wa", "wb")}
    got = make_session(model, "cpu", blocked_chains=True).run(["y"], feeds)[0]
    monkeypatch.setattr(nchwc_chain, "ENABLED", False)
    assert np.array_equal(got, make_session(model, "cpu", blocked_chains=True).run(["y"], feeds)[0])


@needs_nchwc
def test_a_parts_input_joins_the_blocked_chain(monkeypatch) -> None:
    """h (a suffix part's input, NCHW) -> conv a 3x3 -> Relu -> conv b 1x1 -> Add(h, .) ->
    Relu -> y: h's own reorder serves the Add too, so the residual stays blocked and one
    reorder is left at each end; the same values as unchained, bit for bit."""
    nodes = [
        helper.make_node("Conv", ["h", "wb"], ["a"], pads=[0, 0, 0, 0]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Conv", ["r", "wb2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["h", "b"], ["t"]),
        helper.make_node("Relu", ["t"], ["y"]),
    ]
    inputs = [
        helper.make_tensor_value_info("h", TensorProto.FLOAT, [2, C1, 9, 11]),
        helper.make_tensor_value_info("wb", TensorProto.FLOAT, [C1, C1, 1, 1]),
        helper.make_tensor_value_info("wb2", TensorProto.FLOAT, [C1, C1, 3, 3]),
    ]
    model = _model(nodes, inputs, [helper.make_tensor_value_info("y", 1, None)])
    g = _chained(model)
    assert [n.op_type for n in g.node] == [
        "ReorderInput", "Conv", "Conv", "Add", "Relu", "ReorderOutput"
    ]  # fmt: skip
    rng = np.random.default_rng(5)
    feeds = {
        "h": rng.standard_normal((2, C1, 9, 11)).astype(np.float32),
        "wb": (rng.standard_normal((C1, C1, 1, 1)) / C1).astype(np.float32),
        "wb2": (rng.standard_normal((C1, C1, 3, 3)) / (3 * C1)).astype(np.float32),
    }
    got = make_session(model, "cpu", blocked_chains=True).run(["y"], feeds)[0]
    monkeypatch.setattr(nchwc_chain, "ENABLED", False)
    assert np.array_equal(got, make_session(model, "cpu", blocked_chains=True).run(["y"], feeds)[0])


@needs_nchwc
def test_hard_swish_with_scalar_constants_runs_blocked(monkeypatch) -> None:
    """x -> conv a -> hard-swish as Paddle2ONNX writes it (Add 3 -> Clip 0 6 -> Div 6 ->
    Mul by its input: the padded channels hold 3, then 0.5 x 0, never Inf) -> Mul by a
    scalar, Add a scalar -> conv b -> y; and Div(1, conv b's output) -> z, which would put
    1/0 = Inf into the padding: it stays NCHW. Same values as unchained, bit for bit."""
    scalar = lambda n, v: helper.make_node(  # noqa: E731
        "Constant", [], [n], value=helper.make_tensor(n, TensorProto.FLOAT, [1], [v])
    )
    nodes = [
        scalar("three", 3.0), scalar("zero", 0.0), scalar("six", 6.0), scalar("one", 1.0),
        helper.make_node("Conv", ["x", "wa"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "three"], ["a3"]),
        helper.make_node("Clip", ["a3", "zero", "six"], ["ac"]),
        helper.make_node("Div", ["ac", "six"], ["ad"]),
        helper.make_node("Mul", ["a", "ad"], ["hs"]),
        helper.make_node("Mul", ["hs", "three"], ["hm"]),
        helper.make_node("Add", ["hm", "one"], ["h"]),
        helper.make_node("Conv", ["h", "wb"], ["y"]),
        helper.make_node("Div", ["one", "y"], ["z"]),
    ]  # fmt: skip
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 11])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPES[n]) for n in ("wa", "wb")]
    outs = [helper.make_tensor_value_info(n, 1, None) for n in ("y", "z")]
    model = _model(nodes, inputs, outs)
    g = _chained(model)
    assert [n.op_type for n in g.node if n.op_type.startswith("Reorder")] == ["ReorderOutput"]
    z = next(n for n in g.node if n.output[0] == "z")
    assert list(z.input) == ["one", "y"]  # NCHW: 1 / the padding's 0 is not finite
    feeds = {k: v for k, v in _feeds().items() if k in ("x", "wa", "wb")}
    got = make_session(model, "cpu", blocked_chains=True).run(["y", "z"], feeds)
    monkeypatch.setattr(nchwc_chain, "ENABLED", False)
    want = make_session(model, "cpu", blocked_chains=True).run(["y", "z"], feeds)
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)
