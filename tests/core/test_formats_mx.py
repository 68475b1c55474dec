"""Microscaling formats (OCP MX v1.0 and NVFP4) against an independent float64 reference,
exported exactly, and accounted to the byte.

The reference finds each block's scale exponent by comparing powers of two
(no logarithm, no frexp) and rounds every scaled value to the nearest value
of the element's enumerated grid in float64, ties to the even code,
saturating at the largest magnitude; the codec uses ml_dtypes' casts.
"""

from __future__ import annotations

from pathlib import Path

import hypothesis.extra.numpy as hnp
import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.errors import FormatError
from bitlens.core.export import accounting
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.formats import dequantize, parse_format, quantize, storage_bits
from bitlens.core.formats.describe import describe_format
from bitlens.core.formats.families import mx, nvfp4
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import WEIGHT_CHOICES, Plan
from bitlens.core.results import drain
from tests.core.export_models import conv_net, random_feeds, transformer_block

MX_NAMES = list(mx.ELEMENTS)
ALL_NAMES = [*MX_NAMES, "nvfp4"]
PROFILE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the reference ------------------------------------------------------------------------
def ref_floor_log2(a: float) -> int:
    k = 0
    while 2.0**k > a:
        k -= 1
    while 2.0 ** (k + 1) <= a:
        k += 1
    return k


def ref_grid(el: mx.Element) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative element values (float64, ascending) and whether each one's code is even."""
    if el.dtype is None:
        k = np.arange(0, 128)
        return k / 64.0, k % 2 == 0
    codes = np.arange(2 ** (el.bits - 1), dtype=np.uint8)  # sign bit clear: ascending values
    values = codes.view(el.dtype).astype(np.float64)
    keep = np.isfinite(values)
    return values[keep], (codes[keep] % 2 == 0)


def ref_round(v: np.ndarray, el: mx.Element) -> np.ndarray:
    """Nearest grid value, ties to the even code, saturating (float64 in, float64 out)."""
    grid, even = ref_grid(el)
    out = np.empty_like(v)
    for i, x in enumerate(v.ravel()):
        a = min(abs(x), grid[-1])
        j = int(np.searchsorted(grid, a))
        if j == len(grid) or (j > 0 and a - grid[j - 1] < grid[j] - a) or (j > 0 and a - grid[j - 1] == grid[j] - a and not even[j]):
            j -= 1
        out.flat[i] = np.copysign(grid[j], x)
    return out


def ref_mx(x: np.ndarray, el: mx.Element, block: int = 32) -> np.ndarray:
    """MX of a 2-D float32 tensor along axis 1, decoded, in float64."""
    out = np.empty(x.shape, np.float64)
    for r in range(x.shape[0]):
        for s in range(0, x.shape[1], block):
            b = x[r, s : s + block].astype(np.float64)
            amax = float(np.max(np.abs(b)))
            e = -127 if amax == 0 else min(max(ref_floor_log2(amax) - el.emax, -127), 127)
            out[r, s : s + block] = ref_round(b / 2.0**e, el) * 2.0**e
    return out


blocks = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 3), st.integers(1, 70)),
    elements=st.one_of(
        st.floats(-1e3, 1e3, width=32),
        st.sampled_from([0.0, 1.0, -0.5, 448.0, 3e38, -1e-30, 1e-40, 6.0, 2.5, 0.25]),
    ),
)


@PROFILE
@given(x=blocks, name=st.sampled_from(MX_NAMES))
def test_mx_matches_the_float64_reference(x: np.ndarray, name: str) -> None:
    fmt = parse_format(f"{name} blk32@1")
    q = quantize(x, fmt)
    got = dequantize(q)
    want = ref_mx(x, mx.ELEMENTS[name]).astype(np.float32)  # one rounding: the decode's own
    np.testing.assert_array_equal(got, want)
    assert q.scale is not None and q.scale.shape == (x.shape[0], -(-x.shape[1] // 32))
    e = mx.e8m0_codes(q.scale)  # every scale is a power of two E8M0 can hold
    assert np.array_equal(np.ldexp(np.float32(1), e.astype(np.int32) - 127), q.scale)


def ref_nvfp4(x: np.ndarray) -> np.ndarray:
    el = nvfp4.FP4
    amax = float(np.max(np.abs(x.astype(np.float64))))
    s_t = np.float32(1) if amax == 0 else max(np.float32(amax / 2688.0), np.float32(2**-126))
    e4m3 = mx.Element("E4M3", 8, np.dtype(ml_dtypes.float8_e4m3fn), 8)
    out = np.empty(x.shape, np.float64)
    for r in range(x.shape[0]):
        for s in range(0, x.shape[1], 16):
            b = x[r, s : s + 16]
            raw = np.float32(np.float32(np.max(np.abs(b))) / np.float32(6)) / s_t
            s_b = ref_round(np.array([float(raw)]), e4m3)[0]
            eff = np.float32(np.float32(s_b) * s_t)
            v = np.zeros(b.shape) if eff == 0 else (b / eff).astype(np.float32).astype(np.float64)
            out[r, s : s + 16] = (ref_round(v, el).astype(np.float32) * eff).astype(np.float64)
    return out


@PROFILE
@given(x=blocks)
def test_nvfp4_matches_the_float64_reference(x: np.ndarray) -> None:
    q = quantize(x, parse_format("nvfp4 blk16@1"))
    np.testing.assert_array_equal(dequantize(q), ref_nvfp4(x).astype(np.float32))
    assert q.tensor_scale is not None and q.tensor_scale.dtype == np.float32


def test_mx_examples_from_the_spec() -> None:
    """amax 6.0 in MXFP4: scale 2^(2 - 2) = 1, so 6, 3, 0.5 are exact and 5 rounds to 4 (even)."""
    x = np.array([[6.0, 3.0, 0.5, 5.0, -0.25, 0.75]], np.float32)
    q = quantize(x, "mxfp4 blk32@1")
    assert float(q.scale.ravel()[0]) == 1.0
    assert dequantize(q).tolist() == [[6.0, 3.0, 0.5, 4.0, -0.0, 1.0]]
    # amax 448 in MXFP8 E4M3 has emax 8: scale 2^0; 449 would still get scale 2^0 and saturate
    q = quantize(np.array([[448.0, 1.0]], np.float32), "mxfp8_e4m3 blk32@1")
    assert q.scale.ravel().tolist() == [1.0]
    # MXINT8: amax 1.5 -> scale 2^0, codes round(x * 64): 1.5 -> 96/64
    q = quantize(np.array([[1.5, -0.01]], np.float32), "mxint8 blk32@1")
    assert dequantize(q).tolist() == [[1.5, -np.float32(1 / 64)]]


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [("mxfp4", "mxfp4 blk32"), ("MXFP8_E4M3", "mxfp8_e4m3 blk32"), ("mxint8 blk32@1",
     "mxint8 blk32@1"), ("nvfp4", "nvfp4 blk16"), ("mxfp6_e2m3 blk32@0", "mxfp6_e2m3 blk32@0")],
)  # fmt: skip
def test_names_parse(typed: str, canonical: str) -> None:
    assert parse_format(typed).name == canonical


@pytest.mark.parametrize(
    ("name", "reason"),
    [("mxfp4 ch", "block of 32"), ("mxfp4 blk16", "block of 32"), ("mxfp8_e5m2 mse", "range"),
     ("nvfp4 blk32", "block of 16"), ("mxfp4 asym", "symmetric"), ("mxfp6", "mxfp6")],
)  # fmt: skip
def test_bad_names_say_why(name: str, reason: str) -> None:
    with pytest.raises(FormatError, match=reason):
        parse_format(name)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_offered_described_and_accounted(name: str) -> None:
    fmt = parse_format(name)
    assert fmt.name in WEIGHT_CHOICES
    d = describe_format(fmt)
    assert "scale" in d.scale and d.levels is not None
    bound = fmt.with_axis(1)
    block = fmt.block_size
    table = 0 if fmt.bits == 8 else 32 * 2**fmt.bits
    extra = 32 if name == "nvfp4" else 0
    assert storage_bits(bound, (64, 96)) == fmt.bits * 64 * 96 + 8 * 64 * (96 // block) + table + extra


def _run(model: onnx.ModelProto) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {})[0]


def test_every_e8m0_scale_decodes_exactly_in_onnx_runtime() -> None:
    """The export's Pow(2, e - 127) equals 2^(e-127) for all 255 finite E8M0 codes, the
    subnormal float32 2^-127 included."""
    e = np.arange(255, dtype=np.uint8)
    nodes = [
        helper.make_node("Cast", ["e"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["f", "bias"], ["u"]),
        helper.make_node("Pow", ["two", "u"], ["y"]),
    ]
    inits = [numpy_helper.from_array(e, "e"), numpy_helper.from_array(np.float32(127), "bias"),
             numpy_helper.from_array(np.float32(2), "two")]  # fmt: skip
    g = helper.make_graph(nodes, "e8m0", [], [helper.make_tensor_value_info("y", 1, [255])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    want = e.view(ml_dtypes.float8_e8m0fnu).astype(np.float32)
    np.testing.assert_array_equal(_run(model).view(np.uint32), want.view(np.uint32))


@pytest.fixture(scope="module")
def cnn() -> Engine:
    model = from_proto(conv_net(channels=8))  # calibrated on first use
    return Engine(model, random_feeds(model.info, 2), device="cpu")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_mx_plan_exports_exactly_and_lands_on_the_accounting(
    cnn: Engine, tmp_path: Path, name: str
) -> None:
    plan = Plan.uniform(cnn.info, name, "uint8 asym")
    size = drain(accounting.predict(cnn, plan))
    result = drain(export(cnn, plan, tmp_path / "o.onnx", ExportOptions()))
    assert (tmp_path / "o.onnx").stat().st_size == size.file_bytes  # to the byte
    report = drain(check_fidelity(cnn, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
    assert {o.level for o in report.outputs} == {"bit-exact"}
    for layer in report.layers:
        for w in layer.weights:
            assert w.exact and not w.problems and w.bytes_stored <= w.bytes_planned + 8


def test_mx_on_a_transformer_exports_bit_exact(tmp_path: Path) -> None:
    model = from_proto(transformer_block())
    engine = Engine(model, random_feeds(model.info, 2), device="cpu")
    plan = Plan.uniform(model.info, "mxfp4", "fp16")
    result = drain(export(engine, plan, tmp_path / "t.onnx", ExportOptions()))
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
