"""Whether a plan's outputs hold NaN or infinity, and which layer produced it first.

``bitlens eval`` prints this as a warning on stderr and the window shows it in its
message bar; both call :func:`nonfinite_warning` so they name the same layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.export import verdict
from bitlens.core.formats.floats import fmax
from bitlens.core.plan import Plan

if TYPE_CHECKING:
    from bitlens.core.engine import Engine


def nonfinite_warning(engine: Engine, plan: Plan) -> str | None:
    """One line naming the first layer whose output under ``plan`` holds NaN or infinity
    (e.g. an fp16 activation above 65504), or None when every output is finite."""
    if engine.data is None:
        return None  # no inputs, no outputs to check
    outs = engine.run_outputs(plan)
    bad = [n for n, values in outs.items() if verdict.nonfinite(values)]
    if not bad:
        return None
    sim, feeds = engine.simulation(plan)
    samples = [{**engine.data.samples[i], **feeds} for i in engine.data.evaluation]
    found = verdict.first_nonfinite(sim.model, samples, sim.layer_outputs, engine.providers)
    where = "" if found is None else (
        f", first produced by layer {found[0]!r} on evaluation sample {found[1]}"
        + _overflow_hint(engine, plan, found[0])
    )  # fmt: skip
    return (
        f"output(s) {', '.join(map(repr, bad))} hold NaN or infinite values under this plan{where}"
    )


def _overflow_hint(engine: Engine, plan: Plan, layer: str) -> str:
    """Why, when the layer's float activation format cannot hold its input: an audio front
    end's power spectrum (openWakeWord's melspectrogram.onnx) reaches 1e12, fp16 stops at
    65504, and the cast gives inf (then inf - inf is NaN)."""
    act = plan[layer].activation
    if act is None or not act.float_kind:
        return ""
    values = engine.activation_values(layer)
    if values is None or values.size == 0:
        return ""
    peak, limit = float(np.max(np.abs(values))), fmax(act.float_kind)
    if not peak > limit:
        return ""
    return (
        f"; its {act.name} input activation reaches {peak:.3g} on the calibration data, past "
        f"{act.float_kind}'s largest value {limit:g} (keep it float, or use int16 sym)"
    )
