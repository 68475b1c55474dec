"""The search's per-layer statistics without their slow general forms: a 1x1 convolution's
input statistics read straight from its channels (no im2col), and GPTQ on every group of a
grouped convolution at once; both against float64 references written out plainly."""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core.formats import parse_format, quantize
from bitlens.core.recovery.gptq import gptq_codes, hessian_factor
from bitlens.core.recovery.problem import InputStats, geometry


def _plain_stats(x: np.ndarray, groups: int, stride: int) -> tuple[np.ndarray, ...]:
    """Hessian, sums, absolute sums and maxima of a 1x1 conv's features, pixel by pixel."""
    x = x.astype(np.float64)[:, :, ::stride, ::stride]
    c = x.shape[1]
    per = c // groups
    rows = x.transpose(0, 2, 3, 1).reshape(-1, c)  # one row per output pixel
    hess = np.zeros((groups, per, per))
    for r in rows:
        for g in range(groups):
            v = r[g * per : (g + 1) * per]
            hess[g] += np.outer(v, v)
    by_group = rows.reshape(-1, groups, per)
    return hess, by_group.sum(0), np.abs(by_group).sum(0), np.abs(by_group).max(0), len(rows)


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"strides": [2, 2]},
        {"group": 2},
        {"group": 3, "strides": [1, 2], "auto_pad": "SAME_UPPER"},
    ],
)
def test_pointwise_conv_stats_equal_the_pixel_by_pixel_sums(attrs: dict) -> None:
    rng = np.random.default_rng(3)
    g = attrs.get("group", 1)
    x = rng.standard_normal((2, 6, 5, 7)).astype(np.float32) + 0.3
    stride = attrs.get("strides", [1, 1])
    geo = geometry("Conv", (6, 6 // g, 1, 1), attrs, 1)
    kept = x.copy()
    st = InputStats.of(geo, [x, x[:1]])
    assert np.array_equal(x, kept)  # the caller's values are read, never overwritten
    parts = [
        _plain_stats(v, g, 1)
        for v in (x[:, :, :: stride[0], :: stride[1]], x[:1, :, :: stride[0], :: stride[1]])
    ]
    np.testing.assert_allclose(st.hessian, parts[0][0] + parts[1][0], rtol=1e-12)
    np.testing.assert_allclose(st.total, parts[0][1] + parts[1][1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(st.abs_total, parts[0][2] + parts[1][2], rtol=1e-12)
    np.testing.assert_array_equal(st.abs_max, np.maximum(parts[0][3], parts[1][3]))
    assert st.count == parts[0][4] + parts[1][4]


def test_pointwise_stats_equal_the_im2col_route_with_padding_kept_general() -> None:
    # a padded 1x1 conv reads zeros at the border: it stays on the im2col route
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    geo = geometry("Conv", (2, 4, 1, 1), {"pads": [1, 1, 1, 1]}, 1)
    st = InputStats.of(geo, [x])
    assert st.count == 25  # 5x5 output pixels, 16 of them on the zero border
    np.testing.assert_allclose(st.hessian[0], _plain_stats(x, 1, 1)[0][0], rtol=1e-12)


def test_grouped_gptq_equals_each_group_alone() -> None:
    rng = np.random.default_rng(5)
    groups, rows, cols = 6, 3, 9  # a depthwise-like conv: small groups
    fmt = parse_format("int3 sym ch0")
    w = rng.standard_normal((groups, rows, cols))
    x = rng.standard_normal((groups, 200, cols)) @ rng.standard_normal((cols, cols))
    h = 2 * np.einsum("gna,gnb->gab", x, x)
    h[2, 4, :] = h[2, :, 4] = 0.0  # a dead input in one group
    scale = np.empty_like(w)
    zp = np.zeros_like(w)
    for k in range(groups):
        q = quantize(w[k].astype(np.float32), fmt)
        scale[k] = q.scale.astype(np.float64)[:, None]
    together = gptq_codes(w, h, scale, zp, fmt.qmin, fmt.qmax, factor=hessian_factor(h))
    for k in range(groups):
        alone = gptq_codes(w[k], h[k], scale[k], zp[k], fmt.qmin, fmt.qmax)
        np.testing.assert_array_equal(together[k], alone)
    assert np.all(together[2][:, 4] == 0)  # the dead input's weights are zero


@pytest.mark.parametrize(
    ("weight", "attrs", "shape"),
    [((4, 3, 3, 3), {}, (2, 3, 3, 3)), ((4, 1, 1, 1), {"pads": [1, 1, 1, 1]}, (1, 1, 5, 5))],
)
def test_im2col_rows_that_are_a_read_only_view_are_copied(weight, attrs, shape) -> None:
    """One output position (or one padded channel under a 1x1 kernel) made im2col return the
    read-only sliding-window view itself, which the statistics overwrite with |x|: the
    search stopped on openWakeWord's embedding model ("output array is read-only")."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    x.flags.writeable = False
    before = x.copy()
    geo = geometry("Conv", weight, attrs, 1)
    st = InputStats.of(geo, [x])
    f = geo.features(np.array(x, np.float64)).reshape(-1, geo.groups, geo.cols)  # (n, g, c)
    assert st.count == f.shape[0]
    np.testing.assert_array_equal(st.total, f.sum(0))
    np.testing.assert_array_equal(st.abs_max, np.abs(f).max(0))
    np.testing.assert_allclose(st.hessian, np.einsum("ngc,ngd->gcd", f, f), rtol=1e-12)
    np.testing.assert_array_equal(x, before)
