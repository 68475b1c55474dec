"""Whether a plan's outputs hold NaN or infinity, and which layer produced it first.

``bitlens eval`` prints this as a warning on stderr and the window shows it in its
message bar; both call :func:`nonfinite_warning` so they name the same layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitlens.core.export import verdict
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
    )  # fmt: skip
    return (
        f"output(s) {', '.join(map(repr, bad))} hold NaN or infinite values under this plan{where}"
    )
