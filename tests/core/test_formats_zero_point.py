"""A zero point of 0 (symmetric signed integer formats) is not added to or subtracted from
every value, nor repeated to the weight's size for block formats: the codes and values are
the same bits as with it (uniform.quantize/dequantize with the zero point given in full),
and the same as ONNX Runtime's (tests/core/test_formats_ort.py covers every grouping)."""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core.formats import dequantize, parse_format, quantize, uniform
from bitlens.core.formats.families import integer


@pytest.mark.parametrize("spec", ["int8 sym", "int4 sym ch0", "int4 sym blk4@1", "int8 sym blk8@1"])
def test_a_zero_point_of_zero_skipped_gives_the_same_bits(spec: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 16)).astype(np.float32)
    x[0, :4] = [-0.0, -1e-9, 1e-9, 0.0]  # rounding to a signed zero
    fmt = parse_format(spec)
    q = quantize(x, fmt)
    assert not np.asarray(q.zero_point).any()
    g = q.grouping
    full_zp = g.expand(q.zero_point)  # the zero points as the tensor sees them
    assert integer._expand_zero_point(g, q.zero_point).shape == ()  # nothing repeated
    scale = g.expand(q.scale)
    z = np.broadcast_to(full_zp, np.broadcast_shapes(full_zp.shape, x.shape))
    # the straightforward arithmetic, float32 as ORT does it, the zero point in every value
    v = np.rint(np.divide(x, scale, dtype=np.float32)) + z.astype(np.float32)
    want = np.clip(v, fmt.qmin, fmt.qmax).astype(q.codes.dtype)
    np.testing.assert_array_equal(q.codes, want)
    got = dequantize(q)
    ref = (q.codes.astype(np.float32) - z.astype(np.float32)) * scale
    assert got.dtype == ref.dtype and np.array_equal(got.view(np.uint32), ref.view(np.uint32))
    # and an explicit zero point array reaches the same bits through uniform itself
    np.testing.assert_array_equal(uniform.quantize(x, scale, z.copy(), fmt), q.codes)


def test_a_nonzero_zero_point_is_still_applied() -> None:
    fmt = parse_format("uint8 sym")  # zero point 128
    x = np.linspace(-1, 1, 9, dtype=np.float32)
    q = quantize(x, fmt)
    assert int(q.zero_point) == 128
    got = integer._expand_zero_point(q.grouping, q.zero_point)
    assert int(got) == 128  # kept, not replaced by 0
    np.testing.assert_allclose(dequantize(q), x, atol=float(q.scale))
    assert q.codes[4] == 128  # 0 -> the zero point
