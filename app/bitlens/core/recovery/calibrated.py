"""One recovery method (GPTQ, bias correction, AWQ, SmoothQuant, clip search) run on one
weight: the dispatch the engine's recovery cache (bitlens.core.engine.recovery_cache) calls.
It imports nothing from the engine, so importing it alone cannot start an import cycle."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.recovery import Recovered, Recovery
from bitlens.core.recovery.awq import awq
from bitlens.core.recovery.bias import bias_correction
from bitlens.core.recovery.clip import clip_search
from bitlens.core.recovery.gptq import gptq
from bitlens.core.recovery.problem import InputStats, LayerGeometry
from bitlens.core.recovery.smooth import Score, smoothquant

if TYPE_CHECKING:
    from bitlens.core.formats import Format


def recover(
    method: Recovery, w: np.ndarray, bias: np.ndarray | None, fmt: Format,
    geo: LayerGeometry, stats: InputStats, score: Score | None = None,
) -> Recovered:
    """Run one method; ``fmt`` bound to the weight's axes (``score``: SmoothQuant's)."""
    if method is Recovery.GPTQ:
        return gptq(w, fmt, geo, stats)
    if method is Recovery.BIAS:
        return bias_correction(w, bias, fmt, geo, stats)
    if method is Recovery.AWQ:
        return awq(w, fmt, geo, stats)
    if method is Recovery.SMOOTH:
        return smoothquant(w, fmt, geo, stats, score)
    return clip_search(w, fmt, geo, stats)
