"""Pieces the recovery methods share: the plain quantization and its fixed parameters."""

from __future__ import annotations

import numpy as np

from bitlens.core.errors import EngineError
from bitlens.core.formats import Family, Format, QTensor, dequantize, quantize
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.uniform import code_dtype


def require_int(fmt: Format, method: str) -> None:
    if fmt.family is not Family.INT:
        raise EngineError(
            f"{method} needs an integer weight format (int2..int16, per tensor, channel or "
            f"block), not {fmt.name}"
        )


def plain(w: np.ndarray, fmt: Format) -> QTensor:
    """Plain rounding of ``w`` in ``fmt`` (fmt bound to the weight's axis)."""
    return quantize(w, fmt, what="weight")


def group_minmax(w: np.ndarray, fmt: Format) -> tuple[np.ndarray, np.ndarray]:
    """Per-group min and max of ``w`` in the format's parameter layout (float64)."""
    g = Grouping.of(fmt, w.shape)
    groups = g.groups(np.asarray(w, np.float64))
    return g.to_params(np.nanmin(groups, axis=1)), g.to_params(np.nanmax(groups, axis=1))


def with_codes(q: QTensor, codes: np.ndarray) -> QTensor:
    """``q``'s parameters with other integer codes."""
    return QTensor(q.fmt, codes.astype(code_dtype(q.fmt)), scale=q.scale, zero_point=q.zero_point)


def values(q: QTensor, dtype: np.dtype) -> np.ndarray:
    return dequantize(q).astype(dtype, copy=False)
