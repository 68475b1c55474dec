"""Small ONNX models built in code, shared by the tests (``from tests.builders import ...``).

Every builder returns an ``onnx.ModelProto`` that passes
``onnx.checker.check_model`` and runs in ONNX Runtime. Weights look trained:
Gaussian with a fan-in scale, a few output channels with larger range (the
outliers that make per-channel formats matter), from a seeded RNG so every
call returns the same model.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


def weights(
    shape: tuple[int, ...],
    *,
    seed: int,
    fan_in: int | None = None,
    channel_axis: int = 0,
    dtype: type = np.float32,
) -> np.ndarray:
    """Trained-looking weights: N(0, 1/fan_in), two channels with 4x the spread."""
    rng = np.random.default_rng(seed)
    fan = fan_in or int(np.prod(shape[1:])) or 1
    w = rng.standard_normal(shape) / np.sqrt(fan)
    n = shape[channel_axis]
    for c in rng.choice(n, size=min(2, n), replace=False):
        idx = [slice(None)] * len(shape)
        idx[channel_axis] = int(c)
        w[tuple(idx)] *= 4.0
    return w.astype(dtype)


def bias(n: int, *, seed: int, dtype: type = np.float32) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(dtype)


def init(name: str, values: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(values, name)


def model(
    graph: onnx.GraphProto, opset: int = 17, ir_version: int | None = None
) -> onnx.ModelProto:
    """A checked model at ``opset`` with an IR version ORT accepts."""
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="bitlens-tests",
    )
    m.ir_version = ir_version or (7 if opset <= 12 else 8)
    onnx.checker.check_model(m)
    return m


def conv_net() -> onnx.ModelProto:
    """A small image classifier::

    x[1,3,8,8] -> Conv(conv1.w[8,3,3,3], conv1.b) -> Relu
               -> Conv(conv2.w[16,8,3,3], conv2.b) -> GlobalAveragePool -> Flatten
               -> Gemm(fc.w[10,16], fc.b, transB=1) -> y[1,10]
    """
    nodes = [
        helper.make_node("Conv", ["x", "conv1.w", "conv1.b"], ["c1"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv2.w", "conv2.b"], ["c2"], name="conv2", pads=[1] * 4),
        helper.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    inits = [
        init("conv1.w", weights((8, 3, 3, 3), seed=1)),
        init("conv1.b", bias(8, seed=2)),
        init("conv2.w", weights((16, 8, 3, 3), seed=3)),
        init("conv2.b", bias(16, seed=4)),
        init("fc.w", weights((10, 16), seed=5)),
        init("fc.b", bias(10, seed=6)),
    ]
    g = helper.make_graph(
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("x", FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 10])],
        inits,
    )
    return model(g)


def mlp() -> onnx.ModelProto:
    """Two dense layers as MatMul + Add::

    x[2,16] -> MatMul(fc1.w[16,32]) -> Add(fc1.b) -> Relu
            -> MatMul(fc2.w[32,8]) -> Add(fc2.b) -> y[2,8]
    """
    nodes = [
        helper.make_node("MatMul", ["x", "fc1.w"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "fc1.b"], ["a1"], name="fc1_bias"),
        helper.make_node("Relu", ["a1"], ["r1"], name="relu"),
        helper.make_node("MatMul", ["r1", "fc2.w"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "fc2.b"], ["y"], name="fc2_bias"),
    ]
    inits = [
        init("fc1.w", weights((16, 32), seed=11, fan_in=16, channel_axis=1)),
        init("fc1.b", bias(32, seed=12)),
        init("fc2.w", weights((32, 8), seed=13, fan_in=32, channel_axis=1)),
        init("fc2.b", bias(8, seed=14)),
    ]
    g = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", FLOAT, [2, 16])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 8])],
        inits,
    )
    return model(g)


def embedding_model() -> onnx.ModelProto:
    """A token embedding and a projection::

    ids[2,5] (int64) -> Gather(embed.w[50,16]) -> MatMul(proj.w[16,8]) -> y[2,5,8]
    """
    nodes = [
        helper.make_node("Gather", ["embed.w", "ids"], ["e"], name="embed", axis=0),
        helper.make_node("MatMul", ["e", "proj.w"], ["y"], name="proj"),
    ]
    inits = [
        init("embed.w", weights((50, 16), seed=21, fan_in=1)),
        init("proj.w", weights((16, 8), seed=22, fan_in=16, channel_axis=1)),
    ]
    g = helper.make_graph(
        nodes,
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 5, 8])],
        inits,
    )
    return model(g)


def _constant(out: str, values: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [out], value=numpy_helper.from_array(values, out))


def opset12_constant_weights() -> onnx.ModelProto:
    """An old-exporter model: opset 12, weights as Constant nodes, no node names::

    Constant(w1[6,3,3,3]) Constant(b1, value_floats)
           \\          /
    x[1,3,6,6] -> Conv -> Relu -> Flatten -> Gemm(Constant w2[4,216], Constant b2) -> y[1,4]
    """
    b1 = bias(6, seed=32)
    nodes = [
        _constant("w1", weights((6, 3, 3, 3), seed=31)),
        helper.make_node("Constant", [], ["b1"], value_floats=[float(v) for v in b1]),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        _constant("w2", weights((4, 216), seed=33)),
        _constant("b2", bias(4, seed=34)),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1),
    ]
    g = helper.make_graph(
        nodes,
        "opset12_constants",
        [helper.make_tensor_value_info("x", FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 4])],
    )
    return model(g, opset=12)


def _lstm_weights(prefix: str, seed: int, hidden: int, inp: int) -> list[TensorProto]:
    return [
        init(f"{prefix}.W", weights((1, 4 * hidden, inp), seed=seed, fan_in=inp, channel_axis=1)),
        init(
            f"{prefix}.R",
            weights((1, 4 * hidden, hidden), seed=seed + 1, fan_in=hidden, channel_axis=1),
        ),
        init(f"{prefix}.B", bias(8 * hidden, seed=seed + 2).reshape(1, 8 * hidden)),
    ]


def lstm_in_if() -> onnx.ModelProto:
    """An If choosing between two LSTMs (T=4, batch 1, input 8, hidden 6)::

    cond ─┐
    x[4,1,8] ─> If ─> h[1,1,6]
        then_branch: LSTM(x, then.W, then.R, then.B)   weights are then_branch initializers
        else_branch: LSTM(x, else.W, else.R, else.B)   weights are main-graph initializers
                                                       read from the outer scope
    """
    hidden, inp = 6, 8
    out_info = helper.make_tensor_value_info("h", FLOAT, [1, 1, hidden])

    def branch(name: str, prefix: str, inits: list[TensorProto]) -> onnx.GraphProto:
        lstm = helper.make_node(
            "LSTM",
            ["x", f"{prefix}.W", f"{prefix}.R", f"{prefix}.B"],
            ["", f"{name}_h"],
            name=f"{name}_lstm",
            hidden_size=hidden,
        )
        out = helper.make_tensor_value_info(f"{name}_h", FLOAT, [1, 1, hidden])
        return helper.make_graph([lstm], name, [], [out], inits)

    then_g = branch("then", "then", _lstm_weights("then", 41, hidden, inp))
    else_g = branch("else", "else", [])
    node = helper.make_node(
        "If", ["cond"], ["h"], name="choose", then_branch=then_g, else_branch=else_g
    )
    g = helper.make_graph(
        [node],
        "lstm_in_if",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", FLOAT, [4, 1, inp]),
        ],
        [out_info],
        _lstm_weights("else", 51, hidden, inp),
    )
    return model(g)


def loop_with_matmul() -> onnx.ModelProto:
    """A Loop applying a dense layer three times::

    x[1,8] -> Loop(trip=3) -> y[1,8]
        body: h -> MatMul(body.w[8,8]) -> Add(body.b) -> Tanh -> h'
              (body.w and body.b are body initializers)
    then y -> MatMul(head.w[8,4]) -> out[1,4]
    """
    body_nodes = [
        helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep_going"),
        helper.make_node("MatMul", ["h_in", "body.w"], ["m"], name="body_fc"),
        helper.make_node("Add", ["m", "body.b"], ["a"], name="body_bias"),
        helper.make_node("Tanh", ["a"], ["h_out"], name="body_tanh"),
    ]
    body = helper.make_graph(
        body_nodes,
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_in", FLOAT, [1, 8]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("h_out", FLOAT, [1, 8]),
        ],
        [
            init("body.w", weights((8, 8), seed=61, fan_in=8, channel_axis=1)),
            init("body.b", bias(8, seed=62)),
        ],
    )
    nodes = [
        helper.make_node("Loop", ["trip", "keep", "x"], ["y"], name="loop", body=body),
        helper.make_node("MatMul", ["y", "head.w"], ["out"], name="head"),
    ]
    g = helper.make_graph(
        nodes,
        "loop_with_matmul",
        [helper.make_tensor_value_info("x", FLOAT, [1, 8])],
        [helper.make_tensor_value_info("out", FLOAT, [1, 4])],
        [
            init("trip", np.array(3, np.int64)),
            init("keep", np.array(True)),
            init("head.w", weights((8, 4), seed=63, fan_in=8, channel_axis=1)),
        ],
    )
    return model(g)


def fp64_gemm() -> onnx.ModelProto:
    """A double-precision dense layer, B not transposed::

    x[2,8] (fp64) -> Gemm(w[8,4] fp64, b[4] fp64, transB=0) -> y[2,4] (fp64)
    """
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="dense")
    g = helper.make_graph(
        [node],
        "fp64_gemm",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2, 4])],
        [
            init("w", weights((8, 4), seed=71, fan_in=8, channel_axis=1, dtype=np.float64)),
            init("b", bias(4, seed=72, dtype=np.float64)),
        ],
    )
    return model(g)


def nhwc_conv() -> onnx.ModelProto:
    """A TensorFlow-style NHWC convolution, Transposes around the Conv::

    x[1,8,8,3] -> Transpose(0,3,1,2) -> Conv(conv.w[4,3,3,3], conv.b) -> Relu
               -> Transpose(0,2,3,1) -> y[1,8,8,4]
    """
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "conv.w", "conv.b"], ["c"], name="conv", pads=[1] * 4),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Transpose", ["r"], ["y"], name="to_nhwc", perm=[0, 2, 3, 1]),
    ]
    g = helper.make_graph(
        nodes,
        "nhwc_conv",
        [helper.make_tensor_value_info("x", FLOAT, [1, 8, 8, 3])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 8, 8, 4])],
        [init("conv.w", weights((4, 3, 3, 3), seed=81)), init("conv.b", bias(4, seed=82))],
    )
    return model(g)


def dynamic_batch_mlp() -> onnx.ModelProto:
    """An MLP with a symbolic batch dimension::

    x[batch,16] -> MatMul(fc1.w[16,24]) -> Add(fc1.b) -> Relu
                -> Gemm(fc2.w[4,24], fc2.b, transB=1) -> y[batch,4]
    """
    nodes = [
        helper.make_node("MatMul", ["x", "fc1.w"], ["m"], name="fc1"),
        helper.make_node("Add", ["m", "fc1.b"], ["a"], name="fc1_bias"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Gemm", ["r", "fc2.w", "fc2.b"], ["y"], name="fc2", transB=1),
    ]
    g = helper.make_graph(
        nodes,
        "dynamic_batch_mlp",
        [helper.make_tensor_value_info("x", FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", FLOAT, ["batch", 4])],
        [
            init("fc1.w", weights((16, 24), seed=91, fan_in=16, channel_axis=1)),
            init("fc1.b", bias(24, seed=92)),
            init("fc2.w", weights((4, 24), seed=93)),
            init("fc2.b", bias(4, seed=94)),
        ],
    )
    return model(g)


def stateful_gru() -> onnx.ModelProto:
    """A GRU step with its hidden state in and out (T=3, batch 1, input 5, hidden 4)::

    x[3,1,5] ─┐
    h0[1,1,4] ┴> GRU(gru.W[1,12,5], gru.R[1,12,4], gru.B[1,24]) ─> y[3,1,1,4]
                                                                └> h_out[1,1,4]
    """
    hidden, inp = 4, 5
    node = helper.make_node(
        "GRU",
        ["x", "gru.W", "gru.R", "gru.B", "", "h0"],
        ["y", "h_out"],
        name="gru",
        hidden_size=hidden,
        linear_before_reset=1,
    )
    g = helper.make_graph(
        [node],
        "stateful_gru",
        [
            helper.make_tensor_value_info("x", FLOAT, [3, 1, inp]),
            helper.make_tensor_value_info("h0", FLOAT, [1, 1, hidden]),
        ],
        [
            helper.make_tensor_value_info("y", FLOAT, [3, 1, 1, hidden]),
            helper.make_tensor_value_info("h_out", FLOAT, [1, 1, hidden]),
        ],
        [
            init("gru.W", weights((1, 3 * hidden, inp), seed=101, fan_in=inp, channel_axis=1)),
            init(
                "gru.R", weights((1, 3 * hidden, hidden), seed=102, fan_in=hidden, channel_axis=1)
            ),
            init("gru.B", bias(6 * hidden, seed=103).reshape(1, 6 * hidden)),
        ],
    )
    return model(g)


def multi_input() -> onnx.ModelProto:
    """An image and a feature vector joined before the head::

    image[1,3,4,4] -> Conv(conv.w[4,3,1,1]) -> GlobalAveragePool -> Flatten ─┐
    features[1,6] ──────────────────────────────────────────────────────── Concat
                                          -> Gemm(head.w[3,10], head.b, transB=1) -> y[1,3]
    """
    nodes = [
        helper.make_node("Conv", ["image", "conv.w"], ["c"], name="conv"),
        helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Concat", ["f", "features"], ["cat"], name="concat", axis=1),
        helper.make_node("Gemm", ["cat", "head.w", "head.b"], ["y"], name="head", transB=1),
    ]
    g = helper.make_graph(
        nodes,
        "multi_input",
        [
            helper.make_tensor_value_info("image", FLOAT, [1, 3, 4, 4]),
            helper.make_tensor_value_info("features", FLOAT, [1, 6]),
        ],
        [helper.make_tensor_value_info("y", FLOAT, [1, 3])],
        [
            init("conv.w", weights((4, 3, 1, 1), seed=111)),
            init("head.w", weights((3, 10), seed=112)),
            init("head.b", bias(3, seed=113)),
        ],
    )
    return model(g)


ALL_BUILDERS = {
    "conv_net": conv_net,
    "mlp": mlp,
    "embedding_model": embedding_model,
    "opset12_constant_weights": opset12_constant_weights,
    "lstm_in_if": lstm_in_if,
    "loop_with_matmul": loop_with_matmul,
    "fp64_gemm": fp64_gemm,
    "nhwc_conv": nhwc_conv,
    "dynamic_batch_mlp": dynamic_batch_mlp,
    "stateful_gru": stateful_gru,
    "multi_input": multi_input,
}


def random_feeds(m: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for every model input: symbolic dims become 2, ids stay in range, bools True."""
    rng = np.random.default_rng(seed)
    init_names = {t.name for t in m.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for vi in m.graph.input:
        if vi.name in init_names:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 2 for d in tt.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if dtype == np.bool_:
            feeds[vi.name] = np.ones(shape, dtype=bool)
        elif np.issubdtype(dtype, np.integer):
            feeds[vi.name] = rng.integers(0, 10, size=shape).astype(dtype)
        else:
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def conv_chain(between: str, size: tuple[int, int] = (8, 8), kernel: int = 1) -> onnx.ModelProto:
    """x [N,4,H,W] -> conv0 -> ACT -> conv1 -> ACT -> conv2 -> c2, 8 channels.

    ``between``: "silu" (Sigmoid, Mul: YOLOv8's activation), "leaky_max"
    (LeakyRelu, then Max with 0: how tf2onnx writes Keras's LeakyReLU + maximum) or
    "hswish" (``x * Clip(x + 3, 0, 6) / 6``: how Paddle2ONNX writes HardSwish).
    """
    nodes: list[onnx.NodeProto] = []
    inits = [init("zero", np.zeros((1,), np.float32))]
    if between == "hswish":
        inits += [
            init(n, np.asarray(v, np.float32)) for n, v in [("three", 3), ("lo", 0), ("six", 6)]
        ]
    prev, cin, pad = "x", 4, kernel // 2
    for i in range(3):
        nodes.append(helper.make_node(
            "Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[pad] * 4))  # fmt: skip
        inits += [init(f"w{i}", weights((8, cin, kernel, kernel), seed=i)), init(f"b{i}", bias(8, seed=9 + i))]  # fmt: skip
        cin = 8
        if i == 2:
            break
        if between == "silu":
            nodes.append(helper.make_node("Sigmoid", [f"c{i}"], [f"s{i}"]))
            nodes.append(helper.make_node("Mul", [f"c{i}", f"s{i}"], [f"a{i}"]))
        elif between == "hswish":
            mk = helper.make_node
            nodes += [mk("Add", [f"c{i}", "three"], [f"p{i}"]),
                      mk("Clip", [f"p{i}", "lo", "six"], [f"r{i}"]),
                      mk("Mul", [f"c{i}", f"r{i}"], [f"m{i}"]),
                      mk("Div", [f"m{i}", "six"], [f"a{i}"])]  # fmt: skip
        else:
            nodes.append(helper.make_node("LeakyRelu", [f"c{i}"], [f"l{i}"], alpha=0.2))
            nodes.append(helper.make_node("Max", [f"l{i}", "zero"], [f"a{i}"]))
        prev = f"a{i}"
    g = helper.make_graph(
        nodes,
        f"conv_chain_{between}",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 4, *size])],
        [helper.make_tensor_value_info("c2", FLOAT, ["N", 8, *size])],
        inits,
    )
    return model(g, 13)


def pad_by_computed_amounts() -> onnx.ModelProto:
    """A conv sized only through computed pads and a computed Reshape target, as tf2onnx
    and the PyTorch exporter write them (Yahoo's open_nsfw ResNet-50)::

        zeros = ConstantOfShape([2]) ; pads = Cast(Concat(zeros, [1,1,0,0,1,1]), int64)
        x[N,3,8,8] -> Cast -> Pad(pads) -> Conv(w[8,3,3,3]) -> c [N,8,8,8]
        c -> Reshape(Concat(Shape(c)[:1], [-1])) -> Gemm(fc.w[512,4], transB=0) -> y [N,4]

    ONNX shape inference alone sizes neither the conv nor the Gemm.
    """
    i64 = TensorProto.INT64
    nodes = [
        helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array([2], np.int64))),
        helper.make_node("ConstantOfShape", ["two"], ["zeros"],
                         value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
        helper.make_node("Constant", [], ["hw"], value=numpy_helper.from_array(np.array([1, 1, 0, 0, 1, 1], np.float32))),
        helper.make_node("Concat", ["zeros", "hw"], ["padf"], axis=0),
        helper.make_node("Cast", ["padf"], ["pads"], to=i64),
        helper.make_node("Cast", ["x"], ["xc"], to=FLOAT),
        helper.make_node("Pad", ["xc", "pads"], ["xp"], mode="constant"),
        helper.make_node("Conv", ["xp", "w", "b"], ["c"], name="conv"),
        helper.make_node("Shape", ["c"], ["cs"], end=1),
        helper.make_node("Constant", [], ["rest"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["cs", "rest"], ["target"], axis=0),
        helper.make_node("Reshape", ["c", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc.w"], ["y"], name="fc"),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes,
        "pad_by_computed_amounts",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", "K"])],
        [init("w", weights((8, 3, 3, 3), seed=1)), init("b", bias(8, seed=2)),
         init("fc.w", weights((512, 4), seed=3, channel_axis=1))],
    )  # fmt: skip
    return model(g, 17)


def outlier_mlp(d: int = 16, hidden: int = 32, out: int = 8) -> onnx.ModelProto:
    """Two linears without and with a bias, for SmoothQuant and bias creation::

        x[N, d] -> MatMul(W1) "fc1" (no bias) -> Relu -> Gemm(W2, b2) "fc2" -> y[N, out]

    The outlier activation channel that SmoothQuant migrates comes from the data
    (:func:`outlier_feeds`), as LLM activations carry theirs in a few fixed channels.
    """
    w1 = weights((d, hidden), seed=41, channel_axis=1, fan_in=d)
    w2 = weights((hidden, out), seed=42, channel_axis=1, fan_in=hidden)
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W1"], ["h0"], name="fc1"),
            helper.make_node("Relu", ["h0"], ["h"]),
            helper.make_node("Gemm", ["h", "W2", "b2"], ["y"], name="fc2"),
        ],
        "outlier_mlp",
        [helper.make_tensor_value_info("x", FLOAT, ["N", d])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", out])],
        [init("W1", w1), init("W2", w2), init("b2", bias(out, seed=43))],
    )
    return model(g)


def outlier_feeds(n: int = 6, rows: int = 16, d: int = 16, *, channel: int = 3,
                  gain: float = 40.0, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Feeds for :func:`outlier_mlp` whose input channel ``channel`` is ``gain`` times
    larger than the others; bounded (uniform), so the calibration feeds see the range."""
    rng = np.random.default_rng(seed)
    feeds = []
    for _ in range(n):
        x = rng.uniform(-1.0, 1.0, (rows, d))
        x[:, channel] *= gain
        feeds.append({"x": x.astype(np.float32)})
    return feeds


def unbiased_layers(weights_of: dict[str, np.ndarray] | None = None,
                    biases: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    """A Conv, a Gemm and a MatMul without biases, each reading a ReLU (inputs with a
    non-zero mean, which is what makes rounding shift the output)::

        x[N,4,6,6] -> Relu -> Conv(conv.w) "conv" -> Relu -> Flatten
                   -> Gemm(fc.w, transB=1) "fc" -> Relu -> MatMul(head.w) "head" -> y[N,5]

    ``weights_of`` replaces weights and ``biases`` adds them (``conv``: B, ``fc``: C,
    ``head``: an Add after the MatMul): the tests build the expected quantized model
    with them.
    """
    w = {"conv.w": weights((6, 4, 3, 3), seed=51), "fc.w": weights((12, 6 * 16), seed=52),
         "head.w": weights((12, 5), seed=53, channel_axis=1, fan_in=12), **(weights_of or {})}  # fmt: skip
    b = biases or {}
    conv_in = ["r0", "conv.w", *(["conv.b"] if "conv" in b else [])]
    fc_in = ["flat", "fc.w", *(["fc.b"] if "fc" in b else [])]
    nodes = [
        helper.make_node("Relu", ["x"], ["r0"]),
        helper.make_node("Conv", conv_in, ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["r1"]),
        helper.make_node("Flatten", ["r1"], ["flat"]),
        helper.make_node("Gemm", fc_in, ["f"], name="fc", transB=1),
        helper.make_node("Relu", ["f"], ["r2"]),
        helper.make_node("MatMul", ["r2", "head.w"], ["h" if "head" in b else "y"], name="head"),
    ]
    inits = [init(k, v) for k, v in w.items()]
    if "head" in b:
        nodes.append(helper.make_node("Add", ["h", "head.b"], ["y"]))
    inits += [init(f"{k}.b", v) for k, v in b.items()]
    g = helper.make_graph(
        nodes, "unbiased_layers",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 4, 6, 6])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", 5])], inits,
    )  # fmt: skip
    return model(g)


def lstm_recognizer(
    steps: int = 6, inp: int = 16, hidden: int = 16, classes: int = 7, opset: int = 12
) -> onnx.ModelProto:
    """A CRNN-style tail: a bidirectional LSTM and a per-step classifier (ddddocr's shape)::

        x [T, 1, inp] -> LSTM(W, R, B, bidirectional) -> y [T, 2, 1, hidden]
          -> Transpose(0, 2, 1, 3) -> Reshape [T, 2*hidden] -> Gemm(G, transB) -> logits [T, C]
    """
    d = 2
    w = weights((d, 4 * hidden, inp), seed=41, fan_in=inp, channel_axis=1)
    r = weights((d, 4 * hidden, hidden), seed=42, fan_in=hidden, channel_axis=1)
    b = bias(d * 8 * hidden, seed=43).reshape(d, 8 * hidden)
    g = weights((classes, d * hidden), seed=44)
    nodes = [
        helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], name="lstm",
                         direction="bidirectional", hidden_size=hidden),
        helper.make_node("Transpose", ["y"], ["yt"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["yt", "shape"], ["feat"]),
        helper.make_node("Gemm", ["feat", "G", "GB"], ["logits"], name="head", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "lstm_recognizer",
        [helper.make_tensor_value_info("x", FLOAT, [steps, 1, inp])],
        [helper.make_tensor_value_info("logits", FLOAT, [steps, classes])],
        [init("W", w), init("R", r), init("B", b), init("G", g),
         init("GB", bias(classes, seed=45)),
         init("shape", np.array([steps, d * hidden], np.int64))],
    )  # fmt: skip
    return model(graph, opset)
