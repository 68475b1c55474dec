"""The non-uniform and sign formats, and grouping, against independent references.

Each reference is written here in plain float64 numpy / math (none calls the
core's helpers): NF levels from the normal quantile function (and QLoRA's
published NF4 table), log2 levels, binary and ternary (TWN) parameters,
Lloyd's k-means fixed point, and the block / channel grouping by explicit
index arithmetic.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from bitlens.core.formats import Grouping, dequantize, parse_format, quantize

# QLoRA's NF4 table as shipped in bitsandbytes (csrc/kernels.cu).
QLORA_NF4 = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- NF ------------------------------------------------------------------------------
def _norm_ppf(p: float) -> float:
    """Inverse standard normal CDF by bisection on erfc (float64 exact enough)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _nf_reference(bits: int) -> np.ndarray:
    """QLoRA's construction: 2^(n-1) positive and 2^(n-1)-1 negative quantiles, and 0.

    The quantile probabilities run evenly from ``offset`` down to 1/2 (exclusive);
    QLoRA's 4-bit offset is the mean of 1 - 1/(2*15) and 1 - 1/(2*16).
    """
    offset = (1 - 1 / 30 + 1 - 1 / 32) / 2 if bits == 4 else 1 - 0.5 / 2**bits
    half = 2 ** (bits - 1)
    pos = [_norm_ppf(float(p)) for p in np.linspace(offset, 0.5, half + 1)[:-1]]
    neg = [-_norm_ppf(float(p)) for p in np.linspace(offset, 0.5, half)[:-1]]
    levels = np.array(sorted([*pos, 0.0, *neg]))
    return levels / np.abs(levels).max()


def _levels(name: str) -> np.ndarray:
    q = quantize(np.linspace(-1.0, 1.0, 9, dtype=np.float32), name)
    assert q.codebook is not None
    return q.codebook


def test_nf4_levels_match_the_published_qlora_table() -> None:
    ours = _levels("nf4")
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, QLORA_NF4, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_nf_reference(4), QLORA_NF4, rtol=0, atol=1e-6)


@pytest.mark.parametrize("bits", range(2, 9))
def test_nf_levels_match_the_normal_quantile_construction(bits: int) -> None:
    ours = _levels(f"nf{bits}").astype(np.float64)
    ref = _nf_reference(bits)
    assert ours.shape == (2**bits,)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    assert ours[0] == -1.0 and ours[-1] == 1.0 and 0.0 in ours
    assert (np.diff(ours) > 0).all()
    assert (ours > 0).sum() == 2 ** (bits - 1)


def _lut_reference(
    x: np.ndarray, levels: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest level to x / scale (ties to the lower level), and level * scale."""
    r = x.astype(np.float64)[..., None] / scale.astype(np.float64)[..., None]
    dist = np.abs(r - levels.astype(np.float64))
    codes = np.argmin(dist, axis=-1)  # argmin keeps the first (lower) of equal distances
    return codes, levels.astype(np.float64)[codes] * scale.astype(np.float64)


@pytest.mark.parametrize("name", ["nf4", "nf4 blk5@1", "nf3 ch0", "nf2 blk4@0", "nf8 ch1"])
def test_nf_quantization_is_nearest_level_times_absmax(name: str) -> None:
    x = (_rng(len(name)).standard_normal((6, 13)) * 3).astype(np.float32)
    q = quantize(x, name)
    g = q.grouping
    absmax = np.array([np.nanmax(np.abs(row)) for row in _ref_groups(x, g)])
    np.testing.assert_array_equal(q.scale, absmax.reshape(g.param_shape).astype(np.float32))
    codes, values = _lut_reference(x, q.codebook, g.expand(q.scale))
    np.testing.assert_array_equal(q.codes, codes)
    np.testing.assert_allclose(dequantize(q), values, rtol=1e-6, atol=0)


# -- log2 ----------------------------------------------------------------------------
@pytest.mark.parametrize("bits", range(2, 9))
def test_log2_levels_are_zero_and_signed_powers_of_two(bits: int) -> None:
    mags = [2.0**-j for j in range(2 ** (bits - 1) - 1)]
    ref = np.array(sorted([*(-m for m in mags), 0.0, *mags]))
    ours = _levels(f"log{bits}")
    assert ours.shape == (2**bits - 1,)
    np.testing.assert_array_equal(ours.astype(np.float64), ref)


@pytest.mark.parametrize("name", ["log4", "log3 ch1", "log5 blk4@1"])
def test_log2_quantization_is_nearest_power_of_two(name: str) -> None:
    x = (_rng(7).laplace(size=(5, 11)) * 0.3).astype(np.float32)
    q = quantize(x, name)
    codes, values = _lut_reference(x, q.codebook, q.grouping.expand(q.scale))
    np.testing.assert_array_equal(q.codes, codes)
    np.testing.assert_allclose(dequantize(q), values, rtol=1e-6, atol=0)


# -- binary --------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "axis"), [("bin", None), ("bin ch0", 0), ("bin ch2", 2)])
def test_binary_is_sign_times_mean_abs(name: str, axis: int | None) -> None:
    w = _rng(3).standard_normal((4, 3, 7)).astype(np.float32)
    w[0, 0, 0] = 0.0  # zero counts as positive (Where(x >= 0, a, -a))
    q = quantize(w, name)
    w64 = w.astype(np.float64)
    if axis is None:
        alpha = np.abs(w64).mean()
        alpha_x = alpha
    else:
        others = tuple(i for i in range(w.ndim) if i != axis)
        alpha = np.abs(w64).mean(axis=others)
        alpha_x = np.expand_dims(alpha, others)
    np.testing.assert_allclose(q.scale, alpha, rtol=1e-6)
    np.testing.assert_array_equal(q.codes, (w >= 0).astype(np.uint8))
    np.testing.assert_allclose(dequantize(q), np.where(w >= 0, alpha_x, -alpha_x), rtol=1e-6)

    # mean |w| is the L2-optimal alpha for sign(w): any other alpha is worse.
    def err(a: np.ndarray) -> float:
        return float(((w64 - np.where(w64 >= 0, a, -a)) ** 2).sum())

    assert err(alpha_x) < err(alpha_x * 1.01)
    assert err(alpha_x) < err(alpha_x * 0.99)


# -- ternary -------------------------------------------------------------------------
def _twn(w: np.ndarray) -> tuple[float, float, np.ndarray]:
    """TWN (Li & Liu 2016): t = 0.7 mean|w|, alpha = mean |w| over |w| > t."""
    a = np.abs(w.astype(np.float64))
    t = 0.7 * a.mean()
    above = a > t
    alpha = a[above].mean() if above.any() else 0.0
    return t, alpha, np.where(above, np.sign(w), 0).astype(np.int8)


@pytest.mark.parametrize(("name", "axis"), [("tern", None), ("tern ch0", 0), ("tern ch1", 1)])
def test_ternary_follows_twn(name: str, axis: int | None) -> None:
    w = _rng(11).standard_normal((5, 9, 4)).astype(np.float32)
    q = quantize(w, name)
    assert q.threshold is not None
    if axis is None:
        t, alpha, codes = _twn(w)
        np.testing.assert_allclose(q.threshold, t, rtol=1e-6)
        np.testing.assert_allclose(q.scale, alpha, rtol=1e-6)
        np.testing.assert_array_equal(q.codes, codes)
        np.testing.assert_allclose(dequantize(q), codes * alpha, rtol=1e-6)
        return
    for c in range(w.shape[axis]):
        wc = np.take(w, c, axis=axis)
        t, alpha, codes = _twn(wc)
        np.testing.assert_allclose(q.threshold[c], t, rtol=1e-6)
        np.testing.assert_allclose(q.scale[c], alpha, rtol=1e-6)
        np.testing.assert_array_equal(np.take(q.codes, c, axis=axis), codes)
        np.testing.assert_allclose(np.take(dequantize(q), c, axis=axis), codes * alpha, rtol=1e-6)


@pytest.mark.parametrize("grp", ["", " ch0", " ch1"])
def test_ternary_mse_search_is_never_worse_than_twn(grp: str) -> None:
    for seed in range(5):
        w = (_rng(seed).standard_t(df=3, size=(6, 40)) * 0.1).astype(np.float32)
        twn = ((dequantize(quantize(w, "tern" + grp)) - w) ** 2).sum()
        mse = ((dequantize(quantize(w, "tern" + grp + " mse")) - w) ** 2).sum()
        assert mse <= twn


# -- k-means -------------------------------------------------------------------------
def _assert_lloyd_fixed_point(values: np.ndarray, book: np.ndarray, codes: np.ndarray) -> None:
    """Codes pick the nearest level; every used level is the mean of its values."""
    v = values.astype(np.float64).ravel()
    b = book.astype(np.float64)
    c = codes.astype(np.int64).ravel()
    assert (np.diff(b) >= 0).all()
    dist = np.abs(v[:, None] - b[None, :])
    spread = max(float(np.ptp(v)), 1e-30)
    # Nearest level (midpoints are rounded to float32, hence the tiny slack).
    assert (dist[np.arange(v.size), c] <= dist.min(axis=1) + 1e-6 * spread).all()
    nearest = np.argmin(dist, axis=1)
    for j in range(b.size):
        members = v[nearest == j]
        if members.size:
            # The level is the float32 rounding of its cluster's mean.
            assert abs(members.mean() - b[j]) <= 2e-7 * max(abs(b[j]), spread * 1e-3)


@pytest.mark.parametrize("bits", [2, 3, 4, 6])
def test_kmeans_per_tensor_is_a_lloyd_fixed_point(bits: int) -> None:
    x = _rng(bits).standard_normal((16, 24)).astype(np.float32)
    x[:3] *= 5  # a heavier tail
    q = quantize(x, f"km{bits}")
    assert q.codebook is not None and q.codebook.shape == (2**bits,)
    assert q.codebook.dtype == np.float32
    _assert_lloyd_fixed_point(x, q.codebook, q.codes)
    np.testing.assert_array_equal(dequantize(q), q.codebook[q.codes.astype(np.int64)])


@pytest.mark.parametrize(("name", "axis"), [("km3 ch0", 0), ("km2 ch1", 1), ("km4 ch2", 2)])
def test_kmeans_per_channel_fits_and_decodes_each_channel(name: str, axis: int) -> None:
    x = (_rng(axis).standard_normal((3, 5, 7)) * np.arange(1, 8)).astype(np.float32)
    q = quantize(x, name)
    k = 2 ** q.fmt.bits
    assert q.codebook is not None and q.codebook.shape == (x.shape[axis], k)
    deq = dequantize(q)
    for c in range(x.shape[axis]):
        xc, cc = np.take(x, c, axis=axis), np.take(q.codes, c, axis=axis)
        _assert_lloyd_fixed_point(xc, q.codebook[c], cc)
        np.testing.assert_array_equal(np.take(deq, c, axis=axis), q.codebook[c][cc])


def test_kmeans_with_fewer_values_than_levels_is_exact() -> None:
    x = np.array([[0.5, -1.0, 2.0], [2.0, 0.5, 0.5]], np.float32)
    q = quantize(x, "km3")
    np.testing.assert_array_equal(dequantize(q), x)
    q = quantize(x, "km2 ch0")
    np.testing.assert_array_equal(dequantize(q), x)


def test_kmeans_converges_on_a_large_codebook() -> None:
    x = _rng(5).laplace(size=20000).astype(np.float32)
    q = quantize(x, "km8")
    _assert_lloyd_fixed_point(x, q.codebook, q.codes)


# -- grouping ------------------------------------------------------------------------
def _ref_groups(x: np.ndarray, g: Grouping) -> list[np.ndarray]:
    """Groups in parameter order by explicit index arithmetic (padding left out)."""
    if g.granularity.value == "tensor":
        return [x.ravel()]
    if g.granularity.value == "channel":
        return [np.take(x, c, axis=g.axis).ravel() for c in range(x.shape[g.axis])]
    b = g.block_size
    nb = -(-x.shape[g.axis] // b)
    pshape = list(x.shape)
    pshape[g.axis] = nb
    rows: list[np.ndarray] = []
    for p in itertools.product(*(range(n) for n in pshape)):
        start = p[g.axis] * b
        idx = [slice(i, i + 1) for i in p]
        idx[g.axis] = slice(start, min(start + b, x.shape[g.axis]))
        rows.append(x[tuple(idx)].ravel())
    return rows


GROUPING_CASES = [
    ((7,), "int4 sym"),
    ((7,), "int4 sym ch0"),
    ((7,), "int4 sym blk3@0"),
    ((7,), "int4 sym blk8@0"),
    ((5, 3), "int4 sym ch1"),
    ((5, 3), "int4 sym blk2@0"),
    ((5, 3), "int4 sym blk2@1"),
    ((3, 1, 7), "int4 sym blk4@2"),
    ((3, 1, 7), "int4 sym ch1"),
    ((3, 1, 7), "int4 sym blk7@2"),
    ((2, 3, 4, 5), "int4 sym blk3@1"),
    ((2, 3, 4, 5), "int4 sym blk2@3"),
    ((2, 3, 4, 5), "int4 sym blk4@0"),
    ((2, 3, 4, 5), "int4 sym ch3"),
    ((1, 1), "int4 sym blk2@1"),
]


@pytest.mark.parametrize(("shape", "name"), GROUPING_CASES)
def test_grouping_matches_index_arithmetic_and_round_trips(
    shape: tuple[int, ...], name: str
) -> None:
    fmt = parse_format(name)
    g = Grouping.of(fmt, shape)
    x = np.arange(math.prod(shape), dtype=np.float64).reshape(shape) + 1.0
    rows = _ref_groups(x, g)
    groups = g.groups(x)
    assert groups.shape[0] == len(rows) == g.n_groups
    for got, want in zip(groups, rows, strict=True):
        # Real values first, NaN padding after (only for a partial last block).
        np.testing.assert_array_equal(got[: want.size], want)
        assert np.isnan(got[want.size :]).all()
    assert g.padded == any(r.size < groups.shape[1] for r in rows)
    np.testing.assert_array_equal(g.ungroup(groups), x)

    # expand: every element sees the parameter of its own group.
    params = np.arange(g.n_groups, dtype=np.float64) * 10
    expanded = np.broadcast_to(g.expand(g.to_params(params)), shape)
    member = np.broadcast_to(g.expand(g.to_params(np.arange(g.n_groups))), shape)
    for gi, row in enumerate(rows):
        assert set(x[member == gi].tolist()) == set(row.tolist())
    assert set(np.unique(expanded)) == set(params.tolist())
    assert g.to_params(params).shape == g.param_shape


@pytest.mark.parametrize(("shape", "name"), GROUPING_CASES)
def test_symmetric_int_scale_is_per_group_absmax(shape: tuple[int, ...], name: str) -> None:
    x = _rng(len(shape)).standard_normal(shape).astype(np.float32)
    q = quantize(x, name)
    g = q.grouping
    f = q.fmt
    amax = np.array([np.abs(r.astype(np.float64)).max() for r in _ref_groups(x, g)])
    ref_scale = (2 * amax / (f.qmax - f.qmin)).astype(np.float32).reshape(g.param_shape)
    np.testing.assert_array_equal(q.scale, ref_scale)
    s = np.broadcast_to(g.expand(q.scale), shape)
    # Divide in float32 as ONNX Runtime does: -amax / scale is a tie (-7.5 for
    # int4) in float32 that float64 would see as -7.4999999 and round up.
    ref_codes = np.clip(np.rint(x / s), f.qmin, f.qmax)
    np.testing.assert_array_equal(q.codes, ref_codes)
    np.testing.assert_allclose(dequantize(q), ref_codes * s, rtol=1e-6)
