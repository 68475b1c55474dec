"""The memory-lean codec paths equal the straightforward float64 ones, bit for bit.

Min-max statistics read float32 weights without a float64 copy, and the
uniform quantizer/dequantizer work in one float32 buffer; these tests
recompute everything the plain way (float64 widening, ``nanmin``, int32
subtraction) and compare codes, parameters and reconstructions exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core.formats import codec, uniform
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.spec import parse_format


def _plain_int(x: np.ndarray, fmt_text: str):
    fmt = parse_format(fmt_text)
    g = Grouping.of(fmt, x.shape)
    groups = g.groups(x.astype(np.float64))
    lo, hi = np.nanmin(groups, axis=1), np.nanmax(groups, axis=1)
    scale, zp = uniform.params_from_range(g.to_params(lo), g.to_params(hi), fmt)
    s, z = g.expand(scale), g.expand(zp)
    v = np.rint(x.astype(np.float32) / s.astype(np.float32)) + z.astype(np.float32)
    codes = np.clip(v, fmt.qmin, fmt.qmax).astype(uniform.code_dtype(fmt))
    rec = (codes.astype(np.int32) - z.astype(np.int32)).astype(np.float32) * s.astype(np.float32)
    return codes, scale, zp, rec


@pytest.mark.parametrize(
    "fmt_text",
    [
        "int8 sym",
        "uint8 asym",
        "int8 sym ch0",
        "int4 asym ch1",
        "int4 sym blk32@1",
        "uint8 asym blk5@0",
        "int16 asym",
        "int8 sym narrow ch0",
    ],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_uniform_fast_path_equals_float64_path(fmt_text: str, dtype) -> None:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((13, 70)) * rng.uniform(0.01, 50, (13, 1))).astype(dtype)
    x[0, :3] = 0.0
    x[1, :] = -0.0  # a channel of signed zeros
    q = codec.quantize(x, fmt_text)
    codes, scale, zp, rec = _plain_int(x, fmt_text)
    assert q.codes.dtype == codes.dtype
    np.testing.assert_array_equal(q.codes, codes)
    np.testing.assert_array_equal(q.scale, scale)
    np.testing.assert_array_equal(q.zero_point, zp)
    out = codec.dequantize(q)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out.view(np.uint32), rec.view(np.uint32))


def test_quantize_saturates_values_outside_a_given_range_as_before() -> None:
    x = np.array([-1e30, -3.0, 0.0, 2.5, 7.0, 1e30], np.float32)
    fmt = parse_format("int8 sym")
    q = codec.quantize(x, fmt, value_range=(-4.0, 4.0))
    scale, zp = uniform.params_from_range(np.float64(-4.0), np.float64(4.0), fmt)
    with np.errstate(over="ignore"):
        v = np.rint(x / scale) + zp.astype(np.float32)
    np.testing.assert_array_equal(q.codes, np.clip(v, -128, 127).astype(np.int8))
    assert q.codes[0] == -128 and q.codes[-1] == 127


def test_grid_extremes_broadcast_beyond_the_codes_shape() -> None:
    scale = np.array([0.5, 2.0], np.float32)
    zp = np.array([3, -1], np.int8)
    ends = uniform.grid_extremes(scale, zp, parse_format("int8 asym ch0"))
    expect = (np.array([[-128], [127]]) - zp.astype(np.int32)).astype(np.float32) * scale
    np.testing.assert_array_equal(ends, expect)
