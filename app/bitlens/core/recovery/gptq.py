"""GPTQ: quantize a weight column by column, pushing each column's rounding error onto the
columns not yet quantized through the inverse Hessian of the layer's inputs.

Follows ``GPTQ.fasterquant`` of https://github.com/IST-DASLab/gptq (Frantar et al. 2022,
https://arxiv.org/abs/2210.17323): dead inputs (zero Hessian diagonal) get weight 0,
damping of 1% of the mean diagonal, the upper Cholesky factor of ``H^-1``, and lazy block
updates of 128 columns. Differences: the scales and zero points are those of plain
rounding of the whole weight, fixed before the loop (the reference's ``static_groups``),
so any integer per-tensor, per-channel or blocked format is written with the parameters
the format computes; no activation-order permutation. Float64 throughout.
"""

from __future__ import annotations

import numpy as np

from bitlens.core.formats import Format
from bitlens.core.recovery import Recovered, Recovery
from bitlens.core.recovery.common import plain, require_int, values, with_codes
from bitlens.core.recovery.problem import InputStats, LayerGeometry

DAMP = 0.01
BLOCK = 128


def inverse_cholesky(h: np.ndarray, damp: float = DAMP) -> np.ndarray:
    """Upper Cholesky factor ``U`` of ``(H + damp*mean(diag H)*I)^-1`` (``U^T U = H^-1``);
    ``h`` one matrix or a stack of them (LAPACK factors each matrix of a stack alone)."""
    n = h.shape[-1]
    mean = np.mean(np.diagonal(h, axis1=-2, axis2=-1), axis=-1)
    h = h + (damp * mean)[..., None, None] * np.eye(n)
    lower = np.linalg.cholesky(h)
    inv_lower = np.linalg.solve(lower, np.broadcast_to(np.eye(n), h.shape))
    hinv = np.swapaxes(inv_lower, -1, -2) @ inv_lower
    return np.swapaxes(np.linalg.cholesky(hinv), -1, -2)


def hessian_factor(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dead inputs, ``inverse_cholesky`` of ``h`` with their diagonal set to 1); ``h`` one
    matrix or a stack (a grouped conv's groups: one LAPACK call for all)."""
    h = np.array(h, np.float64)
    dead = np.diagonal(h, axis1=-2, axis2=-1) == 0
    diag = np.diagonal(h, axis1=-2, axis2=-1).copy()
    diag[dead] = 1.0
    idx = np.arange(h.shape[-1])
    h[..., idx, idx] = diag
    return dead, inverse_cholesky(h)


def gptq_codes(
    w: np.ndarray, h: np.ndarray, scale: np.ndarray, zp: np.ndarray, qmin: int, qmax: int,
    block: int = BLOCK, factor: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:  # fmt: skip
    """Integer codes ``(rows, cols)`` of ``w`` with per-element fixed ``scale``/``zp``
    (``factor``: ``hessian_factor(h)``, when already computed). With a leading groups axis
    on ``w``, ``h``, ``scale``, ``zp`` (and the factor), every group at once: the column
    loop runs once for all groups (a depthwise conv has hundreds of 9-column groups),
    with the arithmetic of one group per element."""
    w = np.array(w, np.float64)
    dead, u = hessian_factor(h) if factor is None else factor
    stacked = w.ndim == 3
    if not stacked:
        w, dead, u, scale, zp = w[None], dead[None], u[None], scale[None], zp[None]
    w[np.broadcast_to(dead[:, None, :], w.shape)] = 0.0
    groups, rows, cols = w.shape
    codes = np.zeros((groups, rows, cols), np.int64)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w[:, :, i1:i2].copy()
        err1 = np.zeros_like(w1)
        u1 = u[:, i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, :, i]
            s, z = scale[:, :, i1 + i], zp[:, :, i1 + i]
            q = np.clip(np.rint(col / s) + z, qmin, qmax)
            codes[:, :, i1 + i] = q
            err = (col - (q - z) * s) / u1[:, i, i, None]
            w1[:, :, i:] -= err[:, :, None] * u1[:, None, i, i:]
            err1[:, :, i] = err
        for k in range(groups):  # one 2-D product per group, as for a single matrix
            w[k, :, i2:] -= err1[k] @ u[k, i1:i2, i2:]
    return codes if stacked else codes[0]


def gptq(
    w: np.ndarray, fmt: Format, geo: LayerGeometry, stats: InputStats
) -> Recovered:  # fmt: skip
    """GPTQ of weight ``w`` (its stored array) in ``fmt`` (bound to the weight's axes)."""
    require_int(fmt, "GPTQ")
    q0 = plain(w, fmt)
    g = q0.grouping
    scale = geo.to_2d(g.expand(q0.scale).astype(np.float64))
    zp = geo.to_2d(g.expand(q0.zero_point).astype(np.float64))
    w2 = geo.to_2d(np.asarray(w, np.float64))
    # the factor depends on the inputs only: one per layer, whatever the format (a search
    # tries several formats per layer)
    factor = stats.extra.get("gptq_factor")
    if factor is None:
        factor = hessian_factor(2.0 * stats.hessian)
        stats.extra["gptq_factor"] = factor
    codes2 = gptq_codes(
        w2, 2.0 * stats.hessian, scale, zp, fmt.qmin, fmt.qmax, factor=factor  # type: ignore[arg-type]
    )
    q = with_codes(q0, geo.from_2d(codes2))
    return Recovered(Recovery.GPTQ, values(q, w.dtype), q, note="GPTQ, damping 1%")
