"""How far a float16 model's own file is from the engine's graph of it, nothing quantized.

ONNX Runtime's CPU provider computes float16 nodes that have no float16 kernel in float32 and
removes the casts back to float16 between them, except at graph outputs
(onnxruntime/core/optimizer/insert_cast_transformer.cc; model/half_activations.py). The
engine's graph outputs every layer's value and feeds the weights as inputs, so it rounds to
float16 where the file does not: one float16 step at each of those places, each carried to
the outputs through the layers after it. On a deep float16 network that is more than the two
steps reassociation allows: slovorez 0.1.0's morpheme segmenter (tf2onnx, six float16 Conv)
differs from its own engine graph by 3.4e-3 on softmax outputs (7 steps of 4.9e-4) with
every layer float, and its W8A8 export by 2.0e-3. That float difference, measured on the
same feeds, is the floor the export is judged against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.export.deployed import open_session
from bitlens.core.plan import Plan

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

# The export's rounding places are the float model's; which way each value rounds depends on
# the weights, so the quantized file may land a step on either side of where the float one
# does: twice the float model's own difference.
FLOOR_FACTOR = 2.0


def half_floor(
    engine: Engine, samples: Sequence[int], names: Sequence[str], providers: list[str]
) -> dict[str, tuple[float, float]]:
    """Per output, (as written, deployed): the largest |engine graph - file| of the float
    model over ``samples``, the file run as written against the engine's graph as written,
    and in a default session against what the engine shows."""
    plan = Plan.float(engine.info)
    shown = engine.run_outputs(plan, samples)
    sim, sim_feeds = engine.simulation(plan, int32_bias=False)
    graph_written = open_session(sim.model, providers, mode="written")
    wanted = {i.name for i in graph_written.get_inputs()}
    runnable = engine.model.runnable()
    written = open_session(runnable, providers, mode="written")
    deployed = open_session(runnable, providers, mode="deployed")
    out = {n: (0.0, 0.0) for n in names}
    for j, i in enumerate(samples):
        feed = engine.data.samples[i]
        extra = {k: v for k, v in {**feed, **sim_feeds}.items() if k in wanted}
        graph = graph_written.run(list(names), extra)
        file_w = written.run(list(names), feed)
        file_d = deployed.run(list(names), feed)
        for k, n in enumerate(names):
            w = max(out[n][0], _max_abs(graph[k], file_w[k]))
            out[n] = (w, max(out[n][1], _max_abs(shown[n][j], file_d[k])))
    return out


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or not a.size:
        return 0.0
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[ok] - b[ok]))) if ok.any() else 0.0
