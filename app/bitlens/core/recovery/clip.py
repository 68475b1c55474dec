"""Clipping search by output error: per output channel, the ratio of the min-max range
that gives the least squared output error on the calibration inputs.

The range method of a format (min-max, MSE, percentile) minimises the *weight* error;
what matters is the layer's output, whose error for a weight change ``dW`` is
``dW_r H dW_r^T`` per output row (:func:`.problem.output_error`), and the rows are
independent, so each picks its own ratio. A per-tensor format picks one ratio for all.
"""

from __future__ import annotations

import numpy as np

from bitlens.core.formats import Format, Granularity, quantize
from bitlens.core.formats.groups import Grouping
from bitlens.core.recovery import Recovered, Recovery
from bitlens.core.recovery.common import group_minmax, require_int, values
from bitlens.core.recovery.problem import InputStats, LayerGeometry, output_error

RATIOS = tuple(1.0 - 0.04 * k for k in range(13))  # 1.0 down to 0.52


def clip_search(w: np.ndarray, fmt: Format, geo: LayerGeometry, stats: InputStats) -> Recovered:
    require_int(fmt, "clipping search")
    lo, hi = group_minmax(w, fmt)
    w64 = np.asarray(w, np.float64)
    errs = []
    for r in RATIOS:
        q = quantize(w, fmt, value_range=(lo * r, hi * r), what="weight")
        errs.append(output_error(geo, stats, values(q, w.dtype).astype(np.float64) - w64))
    err = np.stack(errs)  # (ratios, groups, rows)
    g = Grouping.of(fmt, w.shape)
    if fmt.granularity is Granularity.TENSOR:
        pick = np.full(err.shape[1:], int(np.argmin(err.sum(axis=(1, 2)))))
    else:
        pick = np.argmin(err, axis=0)  # (groups, rows)
    ratio_rows = np.asarray(RATIOS)[pick]
    ratio_w = geo.from_2d(np.broadcast_to(ratio_rows[..., None], (*pick.shape, geo.cols)))
    ratio = g.to_params(np.nanmax(g.groups(ratio_w), axis=1))
    q = quantize(w, fmt, value_range=(lo * ratio, hi * ratio), what="weight")
    note = f"clip ratios {float(ratio.min()):.2f}..{float(ratio.max()):.2f}"
    return Recovered(Recovery.CLIP, values(q, w.dtype), q, note=note)
