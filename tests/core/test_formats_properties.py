"""Properties every format must keep, for any tensor hypothesis can think of.

Tensors are 1-D to 4-D (0-d excluded) with edge values: constants, all
zeros, single elements, huge (1e30) and tiny (1e-30, float32 denormals)
magnitudes and mixed signs; formats cover every family, granularity and
range method.

One property the brief asked for does not hold and is tested in the form
that does: "the error does not grow with more bits" is false for a *given*
tensor when the two grids are not nested (``[0, 1, 2, 3]`` is exact in
uint2 but not in uint3, see ``test_more_bits_can_be_worse_on_a_given_tensor``).
It holds when the finer width's step divides the coarser one's, i.e. when
``2^b - 1`` divides ``2^b' - 1`` (b divides b': 2→4, 2→6, 2→8, 3→6, 4→8,
8→16), and for every width the error stays within half a step, which
strictly shrinks; on generic random data the error strictly shrinks at
every step.
"""

from __future__ import annotations

import math
from itertools import pairwise

import hypothesis.extra.numpy as hnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bitlens.core.errors import FormatError
from bitlens.core.formats import (
    Family,
    Format,
    Grouping,
    QTensor,
    dequantize,
    parse_format,
    quantize,
    storage_bits,
    storage_bytes,
)

PROFILE = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
F32_TINY = float(np.finfo(np.float32).tiny)

# -- strategies -------------------------------------------------------------------------
INT_HEADS = [
    f"{u}int{b} {sym}"
    for b in (2, 3, 4, 5, 6, 7, 8, 16)
    for u, sym in (("", "sym"), ("", "asym"), ("", "sym narrow"), ("u", "asym"), ("u", "sym"))
]
OTHER_HEADS = [
    "fp64", "fp32", "fp16", "bf16", "fp8e4m3fn", "fp8e5m2", "tern", "bin",
    *(f"{p}{b}" for p in ("nf", "km", "log") for b in range(2, 9)),
]
GRANULARITIES = ("", "ch{axis}", "blk{block}@{axis}")
RANGES = ("", "mse", "p99", "p90")


def _valid_templates() -> list[str]:
    out = []
    for head in INT_HEADS + OTHER_HEADS:
        for gran in GRANULARITIES:
            for rng in RANGES:
                t = " ".join(p for p in (head, gran, rng) if p)
                try:
                    parse_format(t.format(axis=0, block=2))
                except FormatError:
                    continue
                out.append(t)
    return out


TEMPLATES = _valid_templates()
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)


@st.composite
def tensors(draw: st.DrawFn, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """float32 tensors, arbitrary or of a named edge kind."""
    shape = draw(SHAPES) if shape is None else shape
    kind = draw(
        st.sampled_from(
            ["any", "any", "scaled", "constant", "zeros", "one-hot", "tiny", "denormal"]
        )
    )
    if kind == "any":
        big = float(np.float32(1e36))
        elements = st.floats(-big, big, width=32, allow_subnormal=True)
        return draw(hnp.arrays(np.float32, shape, elements=elements))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "constant":
        big = float(np.float32(1e30))
        value = draw(st.floats(-big, big, width=32).filter(lambda v: v != 0))
        return np.full(shape, value, np.float32)
    if kind == "one-hot":  # a single nonzero element
        x = np.zeros(shape, np.float32)
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([1e30, -1e-30, 3.0]))
        return x
    magnitude = {"scaled": draw(st.sampled_from([1e30, 1e3, 1.0, 1e-3, 1e-30])),
                 "tiny": 1e-30, "denormal": 1e-40}[kind]
    x = rng.standard_normal(shape) * magnitude
    x += draw(st.sampled_from([0.0, 0.0, 2.0])) * magnitude  # sometimes all one sign
    return x.astype(np.float32)


@st.composite
def formats(draw: st.DrawFn, shape: tuple[int, ...], templates: list[str] = TEMPLATES) -> Format:
    t = draw(st.sampled_from(templates))
    axis = draw(st.integers(0, len(shape) - 1))
    block = draw(st.sampled_from([2, 3, 4, 8]))
    return parse_format(t.format(axis=axis, block=block))


@st.composite
def tensor_and_format(
    draw: st.DrawFn, templates: list[str] = TEMPLATES
) -> tuple[np.ndarray, Format]:
    x = draw(tensors())
    return x, draw(formats(x.shape, templates))


def _mse(x: np.ndarray, fmt: Format | str) -> float:
    return float(np.mean((dequantize(quantize(x, fmt)).astype(np.float64) - x) ** 2))


# -- codes, values, parameters ---------------------------------------------------------
def _assert_codes_in_range(q: QTensor) -> None:
    f, c = q.fmt, q.codes
    if f.family is Family.INT:
        assert c.dtype.kind in "iu" and c.dtype.itemsize == (1 if f.bits <= 8 else 2)
        assert f.qmin <= int(c.min()) and int(c.max()) <= f.qmax
        assert q.zero_point is not None
        assert f.qmin <= int(q.zero_point.min()) and int(q.zero_point.max()) <= f.qmax
    elif f.is_lut:
        assert q.codebook is not None
        assert c.dtype == np.uint8 and int(c.max()) < 2**f.bits
        assert int(c.max()) < q.codebook.shape[-1] <= 2**f.bits
        assert np.isfinite(q.codebook).all()
    elif f.family is Family.TERNARY:
        assert set(np.unique(c).tolist()) <= {-1, 0, 1}
    elif f.family is Family.BINARY:
        assert set(np.unique(c).tolist()) <= {0, 1}
    else:
        assert np.isfinite(c.astype(np.float64)).all()


def _assert_params_sane(q: QTensor) -> None:
    for p in (q.scale, q.threshold):
        if p is not None:
            assert p.shape == q.grouping.param_shape
            assert np.isfinite(p).all()  # never a NaN (or inf) scale
            assert (p >= 0).all()
    if q.scale is not None and q.fmt.family not in (Family.BINARY, Family.TERNARY):
        assert (q.scale > 0).all()


@PROFILE
@given(tensor_and_format())
def test_codes_in_range_values_finite_shape_kept(case: tuple[np.ndarray, Format]) -> None:
    x, fmt = case
    q = quantize(x, fmt)
    assert q.shape == x.shape
    _assert_codes_in_range(q)
    _assert_params_sane(q)
    y = dequantize(q)
    assert y.shape == x.shape
    assert y.dtype == (np.float64 if fmt.name == "fp64" else np.float32)
    assert np.isfinite(y).all()


@PROFILE
@given(tensor_and_format(), st.sampled_from([np.nan, np.inf, -np.inf]), st.data())
def test_nan_or_inf_input_raises(
    case: tuple[np.ndarray, Format], bad: float, data: st.DataObject
) -> None:
    x, fmt = case
    x = x.copy()
    x.flat[data.draw(st.integers(0, x.size - 1))] = bad
    with pytest.raises(FormatError, match="NaN"):
        quantize(x, fmt, what="w")


@PROFILE
@given(st.data())
def test_all_zeros_reconstruct_exactly(data: st.DataObject) -> None:
    shape = data.draw(SHAPES)
    fmt = data.draw(formats(shape))
    y = dequantize(quantize(np.zeros(shape, np.float32), fmt))
    assert (y == 0).all()


# Every format except binary (no zero level) and k-means (fitted levels).
ZERO_EXACT = [
    t for t in TEMPLATES
    if not t.startswith(("bin", "km"))
]


@PROFILE
@given(tensor_and_format(ZERO_EXACT), st.data())
def test_zero_is_reconstructed_exactly(
    case: tuple[np.ndarray, Format], data: st.DataObject
) -> None:
    """Symmetric grids hold 0; affine integer grids nudge their zero point so they do too."""
    x, fmt = case
    x = x.copy()
    idx = data.draw(st.lists(st.integers(0, x.size - 1), min_size=1, max_size=4))
    x.flat[idx] = data.draw(st.sampled_from([0.0, -0.0]))
    y = dequantize(quantize(x, fmt))
    assert (y[x == 0] == 0).all()


# -- error vs bits ---------------------------------------------------------------------------
INT_KINDS = ("int{b} sym", "int{b} asym", "uint{b} asym", "uint{b} sym")
NESTED_PAIRS = ((2, 4), (2, 6), (2, 8), (3, 6), (4, 8), (8, 16))


def _normal_range(x: np.ndarray) -> bool:
    """No scale is clamped to float32's smallest normal (which breaks nesting)."""
    amax = float(np.abs(x).max())
    return amax == 0 or amax >= 1e-30


@PROFILE
@given(tensors(), st.sampled_from(INT_KINDS), st.sampled_from(NESTED_PAIRS))
def test_error_never_grows_between_nested_widths(
    x: np.ndarray, kind: str, pair: tuple[int, int]
) -> None:
    """With b dividing b', every b-level is a b'-level, so the error cannot grow.

    Float32 scales and products move the grids by a few ulps, hence the
    slack of a millionth of the range in RMS.
    """
    assume(_normal_range(x))
    b, b2 = pair
    amax = float(np.abs(x.astype(np.float64)).max())
    rms, rms2 = math.sqrt(_mse(x, kind.format(b=b))), math.sqrt(_mse(x, kind.format(b=b2)))
    assert rms2 <= rms + 1e-6 * amax


@PROFILE
@given(tensors(), st.sampled_from([*INT_KINDS, "int{b} sym narrow"]))
def test_error_stays_within_half_a_step_that_shrinks_with_bits(x: np.ndarray, kind: str) -> None:
    """Per-tensor min-max: every value lies within half a step of its reconstruction."""
    x64 = x.astype(np.float64)
    amax = float(np.abs(x64).max())
    steps = []
    for b in (2, 3, 4, 5, 6, 7, 8, 16):
        q = quantize(x, kind.format(b=b))
        s = float(q.scale)
        err = np.abs(dequantize(q).astype(np.float64) - x64)
        assert (err <= s / 2 + (np.abs(x64) + amax) * 2.0**-22).all()
        steps.append(s)
    if amax >= 1e-30:  # no clamped scale
        assert all(s2 < s1 for s1, s2 in pairwise(steps))


@PROFILE
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["normal", "uniform", "laplace"]),
    st.sampled_from([*INT_KINDS, "int{b} sym narrow"]),
    st.sampled_from([1e-20, 1e-3, 1.0, 1e20]),
)
def test_error_strictly_shrinks_with_bits_on_random_data(
    seed: int, dist: str, kind: str, magnitude: float
) -> None:
    rng = np.random.default_rng(seed)
    x = (getattr(rng, dist)(size=(8, 64)) * magnitude).astype(np.float32)
    errors = [_mse(x, kind.format(b=b)) for b in (2, 3, 4, 5, 6, 7, 8, 16)]
    assert all(e2 < e1 for e1, e2 in pairwise(errors)), errors


def test_more_bits_can_be_worse_on_a_given_tensor() -> None:
    """Why the monotonicity above needs nested widths: the grids of 2 and 3 bits differ."""
    x = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
    assert _mse(x, "uint2 asym") == 0.0  # step 1: exact
    assert _mse(x, "uint3 asym") > 0.0  # step 3/7: 1 and 2 fall between levels
    assert _mse(x, "uint4 asym") == 0.0  # step 1/5: nested again


# -- range methods ------------------------------------------------------------------------------
MSE_TEMPLATES = [t for t in TEMPLATES if t.endswith(" mse")]


@PROFILE
@given(tensor_and_format(MSE_TEMPLATES))
def test_mse_range_is_never_worse_than_minmax(case: tuple[np.ndarray, Format]) -> None:
    x, fmt = case
    base = fmt.replace(range_method=fmt.range_method.MINMAX)
    assert _mse(x, fmt) <= _mse(x, base) * (1 + 1e-12)


RANGED = ("int", "uint", "fp8", "nf", "log")  # the families that use a calibrated range


@PROFILE
@given(tensor_and_format(), st.data())
def test_a_calibrated_range_gives_valid_codes(
    case: tuple[np.ndarray, Format], data: st.DataObject
) -> None:
    """Any finite lo <= hi per group, including zero and tiny widths.

    Casts, binary, ternary and k-means take their parameters from the tensor
    and ignore the range; the others must reject lo > hi.
    """
    x, fmt = case
    g = Grouping.of(fmt, x.shape)
    size = g.n_groups
    bound = data.draw(st.sampled_from([1e30, 1.0, 1e-40, 0.0]))
    lo = np.array(data.draw(st.lists(st.floats(-bound, 0), min_size=size, max_size=size)))
    width = np.array(data.draw(st.lists(st.floats(0, bound), min_size=size, max_size=size)))
    lo, hi = lo.reshape(g.param_shape), (lo + width).reshape(g.param_shape)
    q = quantize(x, fmt, value_range=(lo, hi))
    _assert_codes_in_range(q)
    _assert_params_sane(q)
    assert np.isfinite(dequantize(q)).all()
    if fmt.name.startswith(RANGED):
        with pytest.raises(FormatError, match="lo > hi"):
            quantize(x, fmt, value_range=(hi + np.abs(hi) + 1.0, hi))


# -- extreme magnitudes -------------------------------------------------------------------------
@PROFILE
@given(st.sampled_from(TEMPLATES), st.sampled_from([0.5, 0.99, 1.0]))
def test_values_near_float32_max_are_finite_or_refused(template: str, frac: float) -> None:
    x = np.array([[1.0, -1.0, 0.5], [0.25, -0.75, 0.0]]) * np.finfo(np.float32).max * frac
    fmt = parse_format(template.format(axis=1, block=2))
    try:
        q = quantize(x.astype(np.float32), fmt)
    except FormatError as exc:
        assert "overflow" in str(exc)
        assert fmt.family is Family.INT and frac > 0.5
        return
    assert np.isfinite(dequantize(q)).all()


@pytest.mark.parametrize("template", TEMPLATES[::7])
def test_float64_beyond_float32_saturates_or_raises(template: str) -> None:
    fmt = parse_format(template.format(axis=0, block=2))
    x = np.array([1e300, -1e300, 1.0])
    if fmt.is_float and not fmt.has_scale:
        y = dequantize(quantize(x, fmt))
        assert np.isfinite(y).all()
        assert y[0] == -y[1] > 1e4  # saturated (fp64 keeps the value)
        return
    with pytest.raises(FormatError, match="float32 range"):
        quantize(x, fmt, what="w")


# -- storage -------------------------------------------------------------------------------------
def _ref_storage_bits(fmt: Format, shape: tuple[int, ...]) -> int:
    n = math.prod(shape)
    if fmt.granularity.value == "tensor":
        groups = 1
    elif fmt.granularity.value == "channel":
        groups = shape[fmt.axis]
    else:
        groups = n // shape[fmt.axis] * -(-shape[fmt.axis] // fmt.block_size)
    total = fmt.bits * n
    if fmt.is_float:
        return total + (32 * groups if fmt.float_kind.startswith("fp8") else 0)
    if fmt.family is Family.KMEANS:
        return total + 32 * 2**fmt.bits * groups
    total += 32 * groups  # scale / alpha
    if fmt.family is Family.INT and not (fmt.signed and fmt.symmetric):
        total += fmt.bits * groups  # zero point
    if fmt.family is Family.NF:
        total += 32 * 2**fmt.bits  # the level table, once per tensor
    if fmt.family is Family.LOG2:
        total += 32 * (2**fmt.bits - 1)
    return total


@PROFILE
@given(SHAPES.flatmap(lambda s: st.tuples(st.just(s), formats(s))))
def test_storage_bits_follows_the_formula(case: tuple[tuple[int, ...], Format]) -> None:
    shape, fmt = case
    bits = storage_bits(fmt, shape)
    assert bits == _ref_storage_bits(fmt, shape)
    assert storage_bytes(fmt, shape) == math.ceil(bits / 8)
    assert storage_bits(fmt.name, shape) == bits


@PROFILE
@given(SHAPES, st.sampled_from(["int{b} sym", "uint{b} asym", "nf{b}", "km{b}", "log{b}"]))
def test_storage_grows_with_width_and_with_finer_groups(shape: tuple[int, ...], kind: str) -> None:
    widths = (2, 3, 4, 5, 6, 7, 8, 16) if "int" in kind else (2, 3, 4, 5, 6, 7, 8)
    sizes = [storage_bits(kind.format(b=b), shape) for b in widths]
    assert all(b2 > b1 for b1, b2 in pairwise(sizes))
    for axis in range(len(shape)):
        for b in widths:
            per_tensor = storage_bits(kind.format(b=b), shape)
            assert storage_bits(kind.format(b=b) + f" ch{axis}", shape) >= per_tensor
            if not kind.startswith("km"):
                assert storage_bits(kind.format(b=b) + f" blk2@{axis}", shape) >= per_tensor
    if math.prod(shape) >= 5:  # below that, the int8 scale outweighs fp16's savings
        ladder = ["fp32", "fp16", "int8 sym", "int4 sym", "int2 sym", "bin"]
        ladder_bits = [storage_bits(n, shape) for n in ladder]
        assert ladder_bits == sorted(ladder_bits, reverse=True)


# -- input types ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype",
    [np.float16, np.float64, np.int8, np.int32, np.uint8, ml_dtypes.bfloat16,
     ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.int4],
)
@pytest.mark.parametrize(
    "name", ["int8 sym", "uint4 asym ch0", "nf4 blk2@1", "tern", "fp16", "km2"]
)
def test_other_input_types_quantize_like_their_float32_values(dtype: type, name: str) -> None:
    """ONNX bf16/fp8/int4 weights load as ml_dtypes arrays; they widen exactly."""
    x = (np.random.default_rng(1).standard_normal((3, 4)) * 3).astype(dtype)
    ours = quantize(x, name)
    ref = quantize(x.astype(np.float64).astype(np.float32), name)
    np.testing.assert_array_equal(ours.codes, ref.codes)
    np.testing.assert_array_equal(dequantize(ours), dequantize(ref))


@pytest.mark.parametrize(
    "x", [np.array([1 + 2j]), np.array([True, False]), np.array(["1.0"]), np.zeros((0, 3))]
)
def test_values_that_are_not_numbers_or_empty_raise(x: np.ndarray) -> None:
    with pytest.raises(FormatError, match="w"):
        quantize(x, "int8", what="w")


def test_shared_level_tables_are_read_only() -> None:
    q = quantize(np.linspace(-1, 1, 5), "nf4")
    assert q.codebook is not None
    with pytest.raises(ValueError):
        q.codebook[0] = 2.0
