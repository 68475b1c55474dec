"""Quantize, dequantize and account for storage, for every format.

:func:`quantize` returns a :class:`QTensor` (codes plus the parameters a
runtime needs); :func:`dequantize` gives back the float32 values the
runtime would compute (float64 for fp64); :func:`storage_bits` counts the
exact bits a tensor costs in the format, parameters included. These are
the only entry points the engine and the exporter use.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

from bitlens.core.errors import FormatError
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.qtensor import F32_MAX as _F32_MAX
from bitlens.core.formats.qtensor import SCALE_BITS, QTensor
from bitlens.core.formats.registry import family_of
from bitlens.core.formats.spec import Format, parse_format

__all__ = [
    "SCALE_BITS", "QTensor", "dequantize", "fake_quantize", "fitted", "quantize", "storage_bits",
]


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
    fit: object | None = None,
) -> QTensor:
    """Quantize ``x`` in ``fmt``.

    ``value_range`` gives per-group ``(lo, hi)`` in the format's parameter
    layout (e.g. from activation calibration) instead of computing them from
    ``x`` with the format's range method. Binary and ternary formats derive
    their alpha and threshold from ``x`` itself and ignore it, as does
    k-means. ``what`` names the tensor in errors. ``fit``: :func:`fitted` of an
    earlier quantize of this same ``x`` in ``fmt`` (k-means's codebooks): the same result,
    without fitting again.
    """
    fmt = parse_format(fmt)
    x = _numeric(np.asarray(x), what)
    if x.size == 0:
        raise FormatError(f"{what} is empty")
    check_finite(x, what)
    grouping = Grouping.of(fmt, x.shape)
    family = family_of(fmt)
    if fmt.has_scale:
        _check_float32_range(x, fmt, what)
    if fit is not None:
        return family.quantize_fitted(x, fmt, grouping, fit, what)
    return family.quantize(x, fmt, grouping, value_range, what)


def fitted(q: QTensor) -> object | None:
    """What :func:`quantize` fitted to give ``q`` (k-means's codebooks), to pass back as
    its ``fit`` for the same values; None where there is nothing worth keeping."""
    return family_of(q.fmt).fitted(q)


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


def dequantize(q: QTensor) -> np.ndarray:
    """The values a runtime reconstructs from ``q`` (float32; float64 for fp64)."""
    return family_of(q.fmt).dequantize(q)


def fake_quantize(x: np.ndarray, fmt: Format | str, **kw: object) -> np.ndarray:
    """Quantize then dequantize: the values the quantized model computes with."""
    return dequantize(quantize(x, fmt, **kw))  # type: ignore[arg-type]


def storage_bits(fmt: Format | str, shape: tuple[int, ...]) -> int:
    """Exact bits to store a tensor of ``shape`` in ``fmt``, parameters included.

    Each family counts its own: codes cost ``bits`` each (packed); each group
    adds its scale (or alpha) and, where the zero point is not implicitly 0,
    a zero point; lookup tables add their float32 levels (see the families).
    """
    fmt = parse_format(fmt)
    return family_of(fmt).storage_bits(fmt, Grouping.of(fmt, tuple(shape)))


def storage_bytes(fmt: Format | str, shape: tuple[int, ...]) -> int:
    return math.ceil(storage_bits(fmt, shape) / 8)
