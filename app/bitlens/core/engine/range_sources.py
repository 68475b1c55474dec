"""Which float tensors the float reference measures for their min and max as it runs.

Besides what the metrics keep (layer inputs and outputs, model outputs), a deployment
target's extra quantizers need the calibrated range of tensors no layer reads
(bitlens.core.targets.placement: a QLinearAdd's output, a Clip after a conv). The float
reference fetched every float tensor of the model for that on the calibration feeds: on
PP-OCRv4 rec (rapidocr-onnxruntime 1.4.4) 589 tensors, 521 of the feed's 695 MB, for a W8A8
plan whose target quantizers read 8 of them. Each fetched value is a buffer of its own
that the first run at a shape faults in (178k page faults, 230-280 ms of system CPU) and
whose min and max numpy then reads (70 ms): about a third of the open's reference phase
(docs/benchmarks.md, "openref (session 15)").

So the reference measures up front only the tensors the presets' placements read (the plans
a sample opens with and the layer table applies; every plan whose integer-kernel layers
and activation format are those of a preset shares its placement), and the engine measures
any other such tensor when a plan first needs it, in one run of the same float session
over the calibration feeds (Ranges._ensure_stats): the same values, so the same ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bitlens.core import targets
from bitlens.core.errors import PlanError
from bitlens.core.formats import Family, parse_format
from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import PRESET_FORMATS, PRESETS, Plan

# False: every float tensor measured by the float reference itself, as before (tests compare)
LATER = True


def preset_sources(
    info: ModelInfo, placement: Callable[[Plan], dict[str, targets.TensorQuantizer]]
) -> frozenset[str]:
    """The tensors whose ranges the target quantizers of the presets' plans read (their
    ``range_of``), ``placement`` the engine's cached one (the first evaluation of a preset
    then finds its placement computed)."""
    found: set[str] = set()
    for name in PRESETS:
        act = PRESET_FORMATS[name][1]
        if act is None or parse_format(act).family is not Family.INT:
            continue  # no integer activations: no integer kernel, no target quantizer
        try:
            plan = Plan.preset(info, name)
        except PlanError:  # a preset that does not apply to this model
            continue
        found.update(q.range_of for q in placement(plan).values())
    return frozenset(found)


def split_measured(
    tensors: Iterable[str], kept: set[str], sources: frozenset[str]
) -> tuple[list[str], list[str]]:
    """(the float tensors the reference fetches for their min and max alone, those left for
    later): of ``tensors`` (in graph order) those not ``kept``, split by ``sources``."""
    extra = [t for t in tensors if t not in kept]
    if not LATER:
        return extra, []
    return [t for t in extra if t in sources], [t for t in extra if t not in sources]
