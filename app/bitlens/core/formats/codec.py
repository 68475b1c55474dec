"""Quantize, dequantize and account for storage, for every format.

:func:`quantize` returns a :class:`QTensor` (codes plus the parameters a
runtime needs); :func:`dequantize` gives back the float32 values the
runtime would compute (float64 for fp64); :func:`storage_bits` counts the
exact bits a tensor costs in the format, parameters included. These are
the only entry points the engine and the exporter use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import ml_dtypes
import numpy as np

from bitlens.core.errors import FormatError
from bitlens.core.formats import floats, lut, ranges, sign, uniform
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.spec import Family, Format, RangeMethod, parse_format

SCALE_BITS = 32  # scales, alphas and codebook entries are stored as float32


@dataclass(frozen=True, eq=False)
class QTensor:
    """A tensor stored in a format: codes and the parameters to decode them.

    ``codes`` has the tensor's shape (integer codes, or the cast values for
    float formats); ``scale``/``zero_point`` follow ONNX's parameter layout
    (scalar, 1-D per channel, or blocked); ``codebook`` is the level table
    of lookup formats (``(L,)``, or ``(C, L)`` for per-channel k-means).
    """

    fmt: Format
    codes: np.ndarray
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    codebook: np.ndarray | None = None
    threshold: np.ndarray | None = None  # ternary only, for display

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    @property
    def grouping(self) -> Grouping:
        return Grouping.of(self.fmt, self.shape)


def check_finite(x: np.ndarray, what: str = "tensor") -> None:
    """Raise a FormatError naming NaN/Inf counts: they would poison every scale."""
    if x.dtype.kind != "f":
        return
    finite = np.isfinite(x)
    if not finite.all():
        n_nan = int(np.isnan(x).sum())
        n_inf = int(x.size - finite.sum() - n_nan)
        raise FormatError(
            f"{what} contains {n_nan} NaN and {n_inf} infinite values; cannot quantize"
        )


def quantize(
    x: np.ndarray,
    fmt: Format | str,
    *,
    value_range: tuple[np.ndarray | float, np.ndarray | float] | None = None,
    what: str = "tensor",
) -> QTensor:
    """Quantize ``x`` in ``fmt``.

    ``value_range`` gives per-group ``(lo, hi)`` in the format's parameter
    layout (e.g. from activation calibration) instead of computing them from
    ``x`` with the format's range method. Binary and ternary formats derive
    their alpha and threshold from ``x`` itself and ignore it, as does
    k-means. ``what`` names the tensor in errors.
    """
    fmt = parse_format(fmt)
    x = _numeric(np.asarray(x), what)
    if x.size == 0:
        raise FormatError(f"{what} is empty")
    check_finite(x, what)
    grouping = Grouping.of(fmt, x.shape)
    if fmt.is_float and not fmt.has_scale:
        return QTensor(fmt, floats.cast(x, fmt.float_kind))
    _check_float32_range(x, fmt, what)

    if fmt.family is Family.KMEANS:
        return _kmeans(x, fmt, grouping)
    if fmt.family in (Family.BINARY, Family.TERNARY):
        return _sign(x, fmt, grouping)

    qdq = _group_qdq(fmt)
    if value_range is None:
        lo, hi = ranges.group_range(grouping.groups(_stats_view(x, fmt)), fmt, qdq)
        lo, hi = grouping.to_params(lo), grouping.to_params(hi)
    else:
        lo, hi = _given_range(value_range, grouping, what)

    if fmt.family is Family.INT:
        scale, zp = uniform.params_from_range(lo, hi, fmt)
        _check_grid(uniform.grid_extremes(scale, zp, fmt), fmt, what)
        codes = uniform.quantize(x, grouping.expand(scale), grouping.expand(zp), fmt)
        return QTensor(fmt, codes, scale=scale, zero_point=zp)
    if fmt.is_float:  # fp8
        scale = floats.fp8_scale(lo, hi, fmt.float_kind)
        _check_grid(floats.fp8_extremes(scale, fmt.float_kind), fmt, what)
        codes = floats.fp8_quantize(x, grouping.expand(scale), fmt.float_kind)
        return QTensor(fmt, codes, scale=scale)
    levels = lut.fixed_levels(fmt.family, fmt.bits)
    scale = lut.absmax_scale(lo, hi)  # levels span [-1, 1]: the grid ends at +-scale
    codes = lut.scaled_quantize(x, grouping.expand(scale), levels)
    return QTensor(fmt, codes, scale=scale, codebook=levels)


def _stats_view(x: np.ndarray, fmt: Format) -> np.ndarray:
    """The values the range statistics read: ``x`` itself for min-max on floats.

    A minimum or maximum is one of the values, and widening to float64 is
    exact and monotonic, so min-max over float32 (or float16) values and
    then widened equals min-max over the widened tensor, bit for bit,
    without a float64 copy of a large weight. Percentiles interpolate and
    the MSE search sums errors: those keep reading float64.
    """
    if fmt.range_method is RangeMethod.MINMAX and x.dtype.kind == "f":
        return x
    return x.astype(np.float64) if x.dtype != np.float64 else x


_F32_MAX = float(np.finfo(np.float32).max)
_NATIVE_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _numeric(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as a numpy int or float array.

    ONNX bf16/fp8/int4 tensors load as ml_dtypes arrays (dtype kind "V", or
    "f" for some fp8 kinds) that numpy arithmetic does not handle uniformly:
    widen them exactly (small floats to float32, small ints to int64).
    """
    if x.dtype.kind in "iu" or x.dtype in _NATIVE_FLOATS:
        return x
    if x.dtype.kind not in "cbOSUM":
        try:
            bits = ml_dtypes.finfo(x.dtype).bits
        except (TypeError, ValueError):
            pass
        else:
            return x.astype(np.float32 if bits <= 32 else np.float64)
        try:
            ml_dtypes.iinfo(x.dtype)
        except (TypeError, ValueError):
            pass
        else:
            return x.astype(np.int64)
    raise FormatError(f"{what}: cannot quantize values of type {x.dtype}")


def _check_float32_range(x: np.ndarray, fmt: Format, what: str) -> None:
    """Scaled formats compute in float32 (as ONNX Runtime does): larger values cannot be stored."""
    if x.dtype.kind == "f" and x.dtype.itemsize <= 4:
        return
    amax = float(np.max(np.abs(x.astype(np.float64))))
    if amax > _F32_MAX:
        raise FormatError(
            f"{what}: values up to {amax:.4g} exceed the float32 range (±{_F32_MAX:.4g}) "
            f"that {fmt.name} computes in"
        )


def _given_range(
    value_range: tuple[np.ndarray | float, np.ndarray | float], grouping: Grouping, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """A calibrated ``(lo, hi)`` broadcast to the parameter layout, checked."""
    try:
        lo = np.broadcast_to(np.asarray(value_range[0], np.float64), grouping.param_shape)
        hi = np.broadcast_to(np.asarray(value_range[1], np.float64), grouping.param_shape)
    except ValueError:
        raise FormatError(
            f"{what}: the calibrated range has shape {np.shape(value_range[0])}, "
            f"expected {grouping.param_shape} (or a scalar)"
        ) from None
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise FormatError(f"{what}: the calibrated range is not finite")
    if (lo > hi).any():
        raise FormatError(f"{what}: the calibrated range has lo > hi")
    if max(float(np.abs(lo).max()), float(np.abs(hi).max())) > _F32_MAX:
        raise FormatError(f"{what}: the calibrated range exceeds the float32 range")
    return lo, hi


def _check_grid(extremes: np.ndarray, fmt: Format, what: str) -> None:
    """The outermost representable values must be finite float32 numbers.

    A range within float32 but close to its limit can still put the grid's
    outer level past it (a symmetric int8 grid reaches -128/127.5 of the
    range): the runtime would reconstruct an infinity, so refuse instead.
    """
    if not np.isfinite(extremes).all():
        raise FormatError(
            f"{what}: values this large (near ±{_F32_MAX:.4g}) overflow float32 on "
            f"the {fmt.name} grid; scale the tensor down or use a float format"
        )


def _sign(x: np.ndarray, fmt: Format, grouping: Grouping) -> QTensor:
    groups = grouping.groups(x.astype(np.float64))
    if fmt.family is Family.BINARY:
        alpha = grouping.to_params(sign.binary_alpha(groups))
        return QTensor(fmt, sign.binary_quantize(x), scale=alpha)
    thr, alpha = sign.ternary_params(groups, search=fmt.range_method is RangeMethod.MSE)
    thr, alpha = grouping.to_params(thr), grouping.to_params(alpha)
    codes = sign.ternary_quantize(x, grouping.expand(thr))
    return QTensor(fmt, codes, scale=alpha, threshold=thr)


def _group_qdq(fmt: Format) -> ranges.QdqFn:
    if fmt.family is Family.INT:
        return uniform.qdq_groups(fmt)
    if fmt.is_float:
        return floats.fp8_qdq_groups(fmt.float_kind)
    return lut.lut_qdq_groups(lut.fixed_levels(fmt.family, fmt.bits))


def _kmeans(x: np.ndarray, fmt: Format, grouping: Grouping) -> QTensor:
    k = 2**fmt.bits
    groups = grouping.groups(x.astype(np.float64))
    books = np.stack([lut.kmeans_1d(g, k) for g in groups])  # (G, k)
    codes_g = np.stack([lut.nearest(g, b) for g, b in zip(groups, books, strict=True)])
    codes = grouping.ungroup(codes_g).astype(np.uint8)
    book = books[0] if grouping.n_groups == 1 and grouping.param_shape == () else books
    return QTensor(fmt, codes, codebook=book)


def dequantize(q: QTensor) -> np.ndarray:
    """The values a runtime reconstructs from ``q`` (float32; float64 for fp64)."""
    fmt, g = q.fmt, q.grouping
    if fmt.is_float and not fmt.has_scale:
        return q.codes if fmt.float_kind == "fp64" else q.codes.astype(np.float32)
    if fmt.family is Family.KMEANS:
        assert q.codebook is not None
        if q.codebook.ndim == 1:
            return q.codebook[q.codes.astype(np.int64)]
        cg = g.groups(q.codes).astype(np.int64)  # (C, S): channel c uses codebook[c]
        return g.ungroup(np.take_along_axis(q.codebook, cg, axis=1))
    assert q.scale is not None
    scale = g.expand(q.scale)
    if fmt.family is Family.INT:
        assert q.zero_point is not None
        return uniform.dequantize(q.codes, scale, g.expand(q.zero_point))
    if fmt.is_float:
        return floats.fp8_dequantize(q.codes, scale)
    if fmt.family is Family.BINARY:
        return sign.binary_dequantize(q.codes, scale)
    if fmt.family is Family.TERNARY:
        return sign.ternary_dequantize(q.codes, scale)
    assert q.codebook is not None
    return lut.scaled_dequantize(q.codes, scale, q.codebook)


def fake_quantize(x: np.ndarray, fmt: Format | str, **kw: object) -> np.ndarray:
    """Quantize then dequantize: the values the quantized model computes with."""
    return dequantize(quantize(x, fmt, **kw))  # type: ignore[arg-type]


def storage_bits(fmt: Format | str, shape: tuple[int, ...]) -> int:
    """Exact bits to store a tensor of ``shape`` in ``fmt``, parameters included.

    Codes cost ``bits`` each (packed); each group adds its float32 scale
    (or alpha) and, where the zero point is not implicitly 0, a zero point of
    ``bits``; lookup tables add their float32 levels (once per tensor for
    NF/log2, once per group for k-means).
    """
    fmt = parse_format(fmt)
    g = Grouping.of(fmt, tuple(shape))
    n, groups = g.numel, g.n_groups
    total = fmt.bits * n
    if fmt.is_float:
        return total + (SCALE_BITS * groups if fmt.has_scale else 0)
    if fmt.family is Family.KMEANS:
        return total + SCALE_BITS * 2**fmt.bits * groups
    total += SCALE_BITS * groups
    if fmt.family is Family.INT and (not fmt.symmetric or not fmt.signed):
        total += fmt.bits * groups
    if fmt.family in (Family.NF, Family.LOG2):
        total += SCALE_BITS * len(lut.fixed_levels(fmt.family, fmt.bits))
    return total


def storage_bytes(fmt: Format | str, shape: tuple[int, ...]) -> int:
    return math.ceil(storage_bits(fmt, shape) / 8)
