"""Weight encodings on single-tensor models: plain ONNX Runtime rebuilds the codec's values.

Each model is just the reconstruction subgraph with the weight as the graph
output::

    stored codes, scales, levels --(Cast/Sub/Mul/Gather/... or DequantizeLinear)--> W
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import bind
from bitlens.core.export import matmulnbits
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.export.weights import FOLD, QDQ, encode_weight
from bitlens.core.formats import fake_quantize, parse_format, quantize, storage_bytes
from bitlens.core.model.types import Storage, WeightInfo

SHAPE = (12, 10, 3, 3)  # axis 1 (blocks) of 10 leaves partial blocks of 4 and 8
LEVELS = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)

FOLD_FORMATS = [
    "int8 sym ch", "uint8 asym", "int8 asym blk4", "int16 sym", "uint16 asym ch",
    "int4 sym ch", "int4 asym blk8", "uint4 asym blk4", "int2 sym ch", "int2 asym blk8",
    "int3 asym blk4", "int5 sym", "int6 asym ch", "int7 sym blk8", "uint3 sym ch",
    "int4 sym ch mse", "int3 asym p99.9",
    "tern ch", "tern mse", "bin ch", "bin",
    "nf4 blk8", "nf3 ch", "nf2", "log4 ch", "log3 blk4", "km4 ch", "km3", "km2 ch",
    "fp16", "bf16", "fp8e4m3fn ch", "fp8e5m2 blk4", "fp8e4m3fn",
]  # fmt: skip
QDQ_FORMATS = {
    "int8 sym ch": TensorProto.INT8,
    "uint8 asym": TensorProto.UINT8,
    "int16 asym": TensorProto.INT16,
    "int4 sym blk4": TensorProto.INT4,
    "uint4 asym ch": TensorProto.UINT4,
    "int2 sym ch": TensorProto.INT2,
    "fp8e4m3fn ch": TensorProto.FLOAT8E4M3FN,
    "fp8e5m2 blk4": TensorProto.FLOAT8E5M2,
}


def _rebuild(
    fmt_name: str, mode: str, dtype=np.float32, shape=SHAPE, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, onnx.ModelProto, object, object]:
    rng = np.random.default_rng(seed)
    value = rng.normal(0, 0.3, shape).astype(dtype)
    w = WeightInfo("W", shape, np.dtype(dtype).name, Storage.INITIALIZER, "", 0, 1)
    fmt = bind(parse_format(fmt_name), w)
    b = GraphBuilder("W", {"W", "x"})
    enc = encode_weight(b, w, value, fmt, mode=mode, allow_int2=True)
    assert enc is not None
    int2 = mode == QDQ and "int2" in fmt_name
    g = helper.make_graph(
        b.nodes,
        "weight",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("W", helper.np_dtype_to_tensor_dtype(value.dtype), shape)],
        b.initializers,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 25 if int2 else 21)])
    model.ir_version = 11 if int2 else 10
    onnx.checker.check_model(model)
    return value, fake_quantize(value, fmt).astype(dtype), model, enc, fmt


def _run(model: onnx.ModelProto, level: ort.GraphOptimizationLevel) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": np.zeros(1, np.float32)})[0]


@pytest.mark.parametrize("name", FOLD_FORMATS)
def test_folded_weight_is_bit_exact_and_sized_as_accounted(name: str) -> None:
    _, want, model, enc, fmt = _rebuild(name, FOLD)
    for level in LEVELS:
        got = _run(model, level)
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    assert "DequantizeLinear" not in {n.op_type for n in model.graph.node}
    planned = storage_bytes(fmt, SHAPE)
    # Packed streams round up to whole groups of 8 codes; "uint sym" stores its fixed
    # zero point once instead of once per channel.
    assert planned - 8 <= enc.nbytes <= planned + fmt.bits * len(enc.stored)


@pytest.mark.parametrize("name", QDQ_FORMATS)
def test_qdq_weight_uses_the_native_type(name: str) -> None:
    _, want, model, enc, fmt = _rebuild(name, QDQ)
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear"]
    codes = next(t for t in model.graph.initializer if t.name == enc.stored[0].name)
    assert codes.data_type == QDQ_FORMATS[name]
    for level in LEVELS:
        got = _run(model, level)
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))
    assert enc.nbytes == storage_bytes(fmt, SHAPE)


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("int4 asym blk4", np.float16), ("nf4 blk8", np.float64), ("fp16", np.float64)],
)
def test_weights_keep_their_own_float_type(name: str, dtype) -> None:
    _, want, model, _, _ = _rebuild(name, FOLD, dtype=dtype)
    got = _run(model, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)


def test_precision_at_or_above_the_weights_own_is_a_no_op() -> None:
    w = WeightInfo("W", (2, 2), "float32", Storage.INITIALIZER, "", 0, 1)
    value = np.ones((2, 2), np.float32)
    for name in ("fp32", "fp64"):
        assert encode_weight(GraphBuilder("W", set()), w, value, parse_format(name)) is None


def test_bf16_weights_are_stored_as_bf16() -> None:
    _, _, model, enc, _ = _rebuild("bf16", FOLD)
    (stored,) = model.graph.initializer
    assert stored.data_type == TensorProto.BFLOAT16
    assert numpy_helper.to_array(stored).dtype == ml_dtypes.bfloat16
    assert enc.nbytes == 2 * int(np.prod(SHAPE))


@pytest.mark.parametrize(
    "name", ["int4 sym blk16@0", "uint4 asym blk32@0", "int8 sym blk16@0", "int2 asym blk16@0",
             "int4 sym ch1"],
)  # fmt: skip
def test_matmulnbits_matches_the_codec_and_decodes_back(name: str) -> None:
    """x[3,64] @ W[64,24] as MatMulNBits equals x @ fake_quantize(W) (exact at K = 64)."""
    rng = np.random.default_rng(1)
    k, n = 64, 24
    value = rng.normal(0, 0.2, (k, n)).astype(np.float32)
    fmt = parse_format(name)
    lay = matmulnbits.layout_for(fmt, (k, n))
    assert lay is not None
    b = GraphBuilder("W", {"W", "x", "y"})
    node, enc = matmulnbits.encode(
        b, helper.make_node("MatMul", ["x", "W"], ["y"]), "W", quantize(value, fmt), lay
    )
    g = helper.make_graph(
        [node],
        "nbits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, n])],
        b.initializers,
    )
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 10
    want_w = fake_quantize(value, fmt)
    np.testing.assert_array_equal(matmulnbits.decode(model, model.graph.node[0]), want_w)
    x = rng.normal(0, 1, (3, k)).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], x @ want_w, rtol=1e-5, atol=1e-5)
    assert enc.nbytes <= storage_bytes(fmt, (k, n)) + 8


def test_matmulnbits_layout_refuses_what_the_kernel_cannot_take() -> None:
    for name, shape in [
        ("int3 sym blk16@0", (64, 8)),  # 3 bits
        ("int4 sym blk24@0", (48, 8)),  # not a power of two
        ("int4 sym blk32@1", (64, 64)),  # blocks along N
        ("int4 sym blk32@0", (48, 8)),  # does not divide K
        ("int4 sym ch1", (48, 8)),  # K not a power of two
        ("nf4 blk32", (64, 8)),  # lookup table
    ]:
        assert matmulnbits.layout_for(parse_format(name), shape) is None, name
