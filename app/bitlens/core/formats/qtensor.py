"""A tensor stored in a format (codes plus parameters), and checks every family shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitlens.core.errors import FormatError
from bitlens.core.formats import ranges
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.spec import Format, RangeMethod

SCALE_BITS = 32  # scales, alphas and codebook entries are stored as float32
F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class QTensor:
    """A tensor stored in a format: codes and the parameters to decode them.

    ``codes`` has the tensor's shape (integer codes, or the cast values for
    float formats); ``scale``/``zero_point`` follow ONNX's parameter layout
    (scalar, 1-D per channel, or blocked); ``codebook`` is the level table
    of lookup formats (``(L,)``, or ``(C, L)`` for per-channel k-means).
    ``tensor_scale`` is a second-level float32 scale for the whole tensor
    (NVFP4's, where ``scale`` holds the per-block scales).
    """

    fmt: Format
    codes: np.ndarray
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    codebook: np.ndarray | None = None
    threshold: np.ndarray | None = None  # ternary only, for display
    tensor_scale: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape)

    @property
    def grouping(self) -> Grouping:
        return Grouping.of(self.fmt, self.shape)


def stats_view(x: np.ndarray, fmt: Format) -> np.ndarray:
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


def given_range(
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
    if max(float(np.abs(lo).max()), float(np.abs(hi).max())) > F32_MAX:
        raise FormatError(f"{what}: the calibrated range exceeds the float32 range")
    return lo, hi


def check_grid(extremes: np.ndarray, fmt: Format, what: str) -> None:
    """The outermost representable values must be finite float32 numbers.

    A range within float32 but close to its limit can still put the grid's
    outer level past it (a symmetric int8 grid reaches -128/127.5 of the
    range): the runtime would reconstruct an infinity, so refuse instead.
    """
    if not np.isfinite(extremes).all():
        raise FormatError(
            f"{what}: values this large (near ±{F32_MAX:.4g}) overflow float32 on "
            f"the {fmt.name} grid; scale the tensor down or use a float format"
        )


def group_ranges(
    x: np.ndarray,
    fmt: Format,
    grouping: Grouping,
    value_range: tuple[object, object] | None,
    qdq: ranges.QdqFn | None,
    what: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group ``(lo, hi)`` in the parameter layout: the calibrated range when given,
    else from ``x`` by the format's range method (``qdq`` rebuilds groups for MSE)."""
    if value_range is not None:
        return given_range(value_range, grouping, what)  # type: ignore[arg-type]
    lo, hi = ranges.group_range(grouping.groups(stats_view(x, fmt)), fmt, qdq)
    return grouping.to_params(lo), grouping.to_params(hi)
