"""The formats core is bit-exact with ONNX Runtime's QuantizeLinear/DequantizeLinear.

Every reference is a single-node-chain model (opset 21, CPU EP, graph
optimizations off) fed with OUR scale and zero point as initializers::

    x ──QuantizeLinear(s, z)──[Clip(n-bit range)]──┬─ Cast(wide) ──► codes
                                                   └─ DequantizeLinear(s, z) ──► y_chain
    c ──Cast(qtype)──► DequantizeLinear(s, z) ──► y          (c = our codes)

``codes`` must equal our ``QTensor.codes`` exactly and both ``y`` and
``y_chain`` must equal our ``dequantize`` bit for bit. The Clip is there for
widths ONNX has no type for (int2..int7) and for narrow ranges (ONNX has
none: QuantizeLinear to int8 can give -128). ORT accepts blocked
quantization with a partial last block (and a block larger than the axis),
so those are tested too.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.formats import (
    Granularity,
    QTensor,
    dequantize,
    parse_format,
    quantize,
)
from bitlens.core.formats.groups import Grouping

OPSET = 21
SHAPE = (4, 6, 5)

# name -> (ONNX code type, a wider ONNX type numpy can hold, its numpy dtype)
INT_TYPES: dict[str, tuple[int, int, type]] = {
    "int8": (TensorProto.INT8, TensorProto.INT8, np.int8),
    "uint8": (TensorProto.UINT8, TensorProto.UINT8, np.uint8),
    "int16": (TensorProto.INT16, TensorProto.INT16, np.int16),
    "uint16": (TensorProto.UINT16, TensorProto.UINT16, np.uint16),
    "int4": (TensorProto.INT4, TensorProto.INT8, np.int8),
    "uint4": (TensorProto.UINT4, TensorProto.UINT8, np.uint8),
}
# Granularity suffixes for SHAPE: per tensor, every axis, divisible blocks,
# partial last blocks and a block longer than its axis.
GROUPINGS = ("", "ch0", "ch1", "ch2", "blk2@0", "blk4@1", "blk3@2", "blk5@2", "blk8@1")
FP8 = {"fp8e4m3fn": TensorProto.FLOAT8E4M3FN, "fp8e5m2": TensorProto.FLOAT8E5M2}


def _session(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto],
) -> ort.InferenceSession:
    graph = helper.make_graph(nodes, "ref", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )


def _axis_attrs(q: QTensor) -> dict[str, int]:
    g = q.grouping
    if g.granularity is Granularity.TENSOR:
        return {}
    if g.granularity is Granularity.CHANNEL:
        return {"axis": g.axis}
    return {"axis": g.axis, "block_size": g.block_size}


def _param_inits(q: QTensor, zp_type: int) -> list[onnx.TensorProto]:
    assert q.scale is not None
    scale = np.asarray(q.scale, np.float32)
    assert not np.isnan(scale).any()
    if q.zero_point is None:  # fp8: a zero point of the fp8 type selects the output type
        zp = [0.0] * scale.size
    else:
        zp = np.asarray(q.zero_point).astype(np.int64).ravel().tolist()
    return [
        numpy_helper.from_array(scale, "s"),
        helper.make_tensor("z", zp_type, list(scale.shape), zp),
    ]


def _ort_int(
    q: QTensor, x: np.ndarray, type_name: str, clip: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ORT's codes for ``x``, DQ of those (``y_chain``) and DQ of our codes (``y``)."""
    qtype, wide, wide_np = INT_TYPES[type_name]
    attrs = _axis_attrs(q)
    shape = list(x.shape)
    inits = _param_inits(q, qtype)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], **attrs)]
    last = "q"
    if clip is not None:
        # Clip has no 4-bit type and ORT's CPU Clip no 16-bit kernel: clip those
        # codes in a wider type and cast back.
        ctype = {
            TensorProto.INT16: TensorProto.INT32,
            TensorProto.UINT16: TensorProto.INT32,
        }.get(qtype, wide)
        inits += [
            helper.make_tensor("lo", ctype, [], [clip[0]]),
            helper.make_tensor("hi", ctype, [], [clip[1]]),
        ]
        if ctype != qtype:
            nodes.append(helper.make_node("Cast", ["q"], ["q32"], to=ctype))
            nodes.append(helper.make_node("Clip", ["q32", "lo", "hi"], ["qc32"]))
            nodes.append(helper.make_node("Cast", ["qc32"], ["qc"], to=qtype))
        else:
            nodes.append(helper.make_node("Clip", ["q", "lo", "hi"], ["qc"]))
        last = "qc"
    nodes += [
        helper.make_node("Cast", [last], ["codes"], to=wide),
        helper.make_node("DequantizeLinear", [last, "s", "z"], ["y_chain"], **attrs),
        helper.make_node("Cast", ["c"], ["cn"], to=qtype),
        helper.make_node("DequantizeLinear", ["cn", "s", "z"], ["y"], **attrs),
    ]
    sess = _session(
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("c", wide, shape),
        ],
        [
            helper.make_tensor_value_info("codes", wide, shape),
            helper.make_tensor_value_info("y_chain", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, shape),
        ],
        inits,
    )
    codes, y_chain, y = sess.run(None, {"x": x, "c": q.codes.astype(wide_np)})
    return codes, y_chain, y


def _assert_int_matches(
    q: QTensor, x: np.ndarray, type_name: str, clip: tuple[int, int] | None = None
) -> None:
    codes, y_chain, y = _ort_int(q, x, type_name, clip)
    ours = dequantize(q)
    assert ours.dtype == np.float32
    assert q.codes.shape == x.shape
    np.testing.assert_array_equal(codes.astype(np.int64), q.codes.astype(np.int64))
    assert np.array_equal(y, ours)
    assert np.array_equal(y_chain, ours)


def _data(seed: int, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Values with different magnitudes and offsets per slice, some exact zeros."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * rng.uniform(0.01, 10.0, size=(shape[0], 1, 1))
    x += rng.uniform(-2.0, 2.0, size=(1, shape[1], 1))
    x.flat[:: 7] = 0.0
    return x.astype(np.float32)


def _int_names(type_name: str) -> list[str]:
    if type_name.startswith("u"):
        return [f"{type_name} asym", f"{type_name} sym"]
    return [f"{type_name} sym", f"{type_name} asym", f"{type_name} sym narrow"]


INT_CASES = [
    f"{name} {grp} {rng}".strip()
    for t in INT_TYPES
    for name in _int_names(t)
    for grp in GROUPINGS
    for rng in ("", "p90")  # p90 clips: out-of-range values must saturate like ORT
]


@pytest.mark.parametrize("name", INT_CASES)
def test_integer_codes_and_values_match_ort(name: str) -> None:
    x = _data(len(name) * 31 + sum(map(ord, name)))
    q = quantize(x, name)
    f = q.fmt
    # ONNX has no narrow range: QuantizeLinear may give -128, so a narrow
    # format needs the Clip to [-127, 127] (what an exporter must emit).
    _assert_int_matches(q, x, name.split()[0], clip=(f.qmin, f.qmax) if f.narrow else None)


def _pow2_range(
    fmt_name: str, grouping: Grouping, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A calibrated (lo, hi) whose scale is a power of two per group, and that scale and zp."""
    f = parse_format(fmt_name)
    steps = f.qmax - f.qmin
    scale = 2.0 ** rng.integers(-4, 3, size=grouping.param_shape)
    if f.symmetric:
        lo, hi = -scale * steps / 2, scale * steps / 2
        zp = np.full(grouping.param_shape, 0 if f.signed else (f.qmin + f.qmax + 1) // 2)
    else:
        k = rng.integers(0, steps + 1, size=grouping.param_shape)
        lo = -k * scale
        hi = lo + steps * scale
        zp = f.qmin + k
    return lo, hi, scale, zp


@pytest.mark.parametrize("type_name", list(INT_TYPES))
@pytest.mark.parametrize("sym", ["sym", "asym"])
@pytest.mark.parametrize("grp", ["", "ch1", "blk4@1"])
def test_exact_half_boundaries_round_to_even_like_ort(type_name: str, sym: str, grp: str) -> None:
    """x / s lands exactly on k + 1/2: ORT (and we) round half to even, after dividing."""
    name = f"{type_name} {sym} {grp}".strip()
    f = parse_format(name)
    g = Grouping.of(f, SHAPE)
    rng = np.random.default_rng(len(name))
    lo, hi, scale, zp = _pow2_range(name, g, rng)
    s_x, z_x = g.expand(scale), g.expand(zp)
    # Target codes a little beyond the range on both sides, half of them on a tie.
    target = rng.integers(f.qmin - 3, f.qmax + 4, size=SHAPE)
    half = rng.integers(0, 2, size=SHAPE) * 0.5 * rng.choice([-1.0, 1.0], size=SHAPE)
    x = ((target - z_x + half) * s_x).astype(np.float32)
    assert np.array_equal(x.astype(np.float64), (target - z_x + half) * s_x)  # exact in float32

    q = quantize(x, name, value_range=(lo, hi))
    assert np.array_equal(q.scale, scale.astype(np.float32))
    assert np.array_equal(q.zero_point.astype(np.int64), zp)
    _assert_int_matches(q, x, type_name)

    ratio = x.astype(np.float64) / s_x
    inside = (q.codes > f.qmin) & (q.codes < f.qmax)
    ties = (ratio - np.floor(ratio) == 0.5) & inside
    assert ties.sum() > 5
    offset = q.codes.astype(np.int64) - np.broadcast_to(z_x, SHAPE)
    assert (offset[ties] % 2 == 0).all()  # every tie went to the even neighbour
    assert (np.abs(offset[ties] - ratio[ties]) == 0.5).all()


# n-bit widths ONNX has no type for: QuantizeLinear to int8/uint8, then Clip.
NBIT_CASES = [
    f"{sign}int{bits} {sym} {grp}".strip()
    for bits in range(2, 8)
    for sign, syms in (("", ("sym", "asym", "sym narrow")), ("u", ("asym", "sym")))
    for sym in syms
    for grp in ("", "ch0", "ch2", "blk4@1", "blk3@2")
]


@pytest.mark.parametrize("name", NBIT_CASES)
def test_n_bit_matches_ort_int8_quantize_then_clip(name: str) -> None:
    f = parse_format(name)
    x = _data(sum(map(ord, name)))
    q = quantize(x, name)
    assert f.qmin <= q.codes.min() and q.codes.max() <= f.qmax
    carrier = "uint8" if name.startswith("u") else "int8"
    _assert_int_matches(q, x, carrier, clip=(f.qmin, f.qmax))


@pytest.mark.parametrize("bits", range(2, 8))
def test_n_bit_half_boundaries_match_ort(bits: int) -> None:
    name = f"int{bits} asym ch1"
    f = parse_format(name)
    g = Grouping.of(f, SHAPE)
    rng = np.random.default_rng(bits)
    lo, hi, scale, zp = _pow2_range(name, g, rng)
    target = rng.integers(f.qmin - 2, f.qmax + 3, size=SHAPE)
    x = ((target - g.expand(zp) + 0.5) * g.expand(scale)).astype(np.float32)
    q = quantize(x, name, value_range=(lo, hi))
    _assert_int_matches(q, x, "int8", clip=(f.qmin, f.qmax))


def _ort_fp8(q: QTensor, x: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    attrs = _axis_attrs(q)
    shape = list(x.shape)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], saturate=1, **attrs),
        helper.make_node("Cast", ["q"], ["codes"], to=TensorProto.FLOAT),
        helper.make_node("DequantizeLinear", ["q", "s"], ["y_chain"], **attrs),
        helper.make_node("Cast", ["c"], ["cn"], to=FP8[kind]),
        helper.make_node("DequantizeLinear", ["cn", "s"], ["y"], **attrs),
    ]
    sess = _session(
        nodes,
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, shape),
        ],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
            for n in ("codes", "y_chain", "y")
        ],
        _param_inits(q, FP8[kind]),
    )
    codes, y_chain, y = sess.run(None, {"x": x, "c": q.codes.astype(np.float32)})
    return codes, y_chain, y


def _assert_fp8_matches(q: QTensor, x: np.ndarray, kind: str) -> None:
    codes, y_chain, y = _ort_fp8(q, x, kind)
    ours = q.codes.astype(np.float32)  # fp8 -> float32 is exact
    assert q.codes.dtype == np.dtype(getattr(ml_dtypes, kind.replace("fp8", "float8_")))
    assert np.array_equal(codes, ours)
    assert np.array_equal(np.signbit(codes), np.signbit(ours))
    deq = dequantize(q)
    assert np.array_equal(y, deq)
    assert np.array_equal(y_chain, deq)


@pytest.mark.parametrize("kind", list(FP8))
@pytest.mark.parametrize("grp", ["", "ch0", "ch1", "blk4@1", "blk3@2"])
@pytest.mark.parametrize("rng_name", ["", "p90", "mse"])
def test_fp8_codes_match_ort_saturating_quantize(kind: str, grp: str, rng_name: str) -> None:
    name = f"{kind} {grp} {rng_name}".strip()
    x = _data(sum(map(ord, name)))
    _assert_fp8_matches(quantize(x, name), x, kind)


@pytest.mark.parametrize("kind", list(FP8))
def test_fp8_ties_subnormals_and_saturation_match_ort(kind: str) -> None:
    """Scale 1: x holds every finite fp8 value, every midpoint (ties to even) and overflow."""
    dt = np.dtype(getattr(ml_dtypes, kind.replace("fp8", "float8_")))
    values = np.arange(256, dtype=np.uint8).view(dt).astype(np.float32)
    values = np.unique(values[np.isfinite(values)])
    mids = (values[1:] + values[:-1]) / 2  # exact in float32
    fmax = float(values.max())
    extra = np.array([fmax * 1.01, -fmax * 1.5, 1e30, -1e30, -0.0, 1e-30, -1e-30], np.float32)
    x = np.concatenate([values, mids, extra]).astype(np.float32)
    q = quantize(x, kind, value_range=(-fmax, fmax))
    assert q.scale == np.float32(1.0)
    _assert_fp8_matches(q, x, kind)
    assert np.abs(dequantize(q)).max() == fmax  # saturated, never NaN or inf


def _ort_cast(x: np.ndarray, to: int) -> np.ndarray:
    """ORT Cast float32 -> ``to`` -> float32."""
    shape = list(x.shape)
    sess = _session(
        [
            helper.make_node("Cast", ["x"], ["h"], to=to),
            helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [],
    )
    return sess.run(None, {"x": x})[0]


def _every_value_and_midpoint(dt: np.dtype) -> np.ndarray:
    """All finite values of a 16-bit float type as float32, their midpoints and random values."""
    values = np.arange(2**16, dtype=np.uint16).view(dt).astype(np.float32)
    values = np.unique(values[np.isfinite(values)])
    # Exact in float32 (one more significant bit); summed in float64 to not overflow.
    mids = ((values[1:].astype(np.float64) + values[:-1]) / 2).astype(np.float32)
    rand = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    return np.concatenate([values, mids, rand, -rand * 1e-6, [np.float32(-0.0)]])


def test_fp16_matches_ort_cast_and_saturates_where_ort_overflows() -> None:
    x = _every_value_and_midpoint(np.dtype(np.float16))
    big = np.array([65519.0, 65520.0, 1e5, -1e5, 3e38], np.float32)
    ours = quantize(np.concatenate([x, big]), "fp16")
    assert ours.codes.dtype == np.float16
    ort_y = _ort_cast(x, TensorProto.FLOAT16)
    deq = dequantize(ours)
    assert deq.dtype == np.float32
    assert np.array_equal(deq[: x.size].view(np.uint32), ort_y.view(np.uint32))
    # Beyond the fp16 range ORT's Cast gives inf; we saturate at 65504 on purpose.
    assert np.isinf(_ort_cast(big[1:], TensorProto.FLOAT16)).all()
    np.testing.assert_array_equal(deq[x.size :], [65504, 65504, 65504, -65504, 65504])


def test_bf16_matches_ml_dtypes_and_ort_cast() -> None:
    bf16 = np.dtype(ml_dtypes.bfloat16)
    x = _every_value_and_midpoint(bf16)
    ours = quantize(x, "bf16")
    assert ours.codes.dtype == bf16
    assert np.array_equal(ours.codes.view(np.uint16), x.astype(bf16).view(np.uint16))
    ort_y = _ort_cast(x, TensorProto.BFLOAT16)
    assert np.array_equal(dequantize(ours).view(np.uint32), ort_y.view(np.uint32))
    # Between the bf16 maximum and float32's, ml_dtypes rounds to inf; we saturate.
    top = np.array([np.finfo(np.float32).max, -3.39e38], np.float32)
    assert np.isinf(top.astype(bf16).astype(np.float32)).any()
    bf_max = float(ml_dtypes.finfo(bf16).max)
    np.testing.assert_array_equal(dequantize(quantize(top, "bf16")), [bf_max, -bf_max])


def test_fp16_of_ties_rounds_to_even_like_ml_dtypes() -> None:
    x = _every_value_and_midpoint(np.dtype(np.float16))
    ours = quantize(x, "fp16").codes
    assert np.array_equal(ours.view(np.uint16), x.astype(np.float16).view(np.uint16))
