"""Find a mixed-precision plan under a budget: sensitivities, greedy allocation, refinement.

Everything runs on the engine's public API (``run_outputs``, ``weight_error``,
``evaluate``), so its sessions, weight cache and calibration are reused. A
plan's error is the relative L2 error of the model outputs against float (root
mean square over the outputs); its size is the exported file's: the float
export, less the float weights the plan replaces, plus the planned weight
bytes, plus what the exporter writes around them (unpacking nodes, scales,
quantizers, integer-kernel groups, provenance). Under a size budget that
graph cost is first measured per format, by exporting (in memory) two small
layers in each weight format (the export reports each one's bytes), every
activation at the base format, one
integer-kernel group per op type and each wide activation; then the uniform
plans nearest the budget, and every plan the accounting puts within a few
hundred bytes of it, are exported in memory: those plans carry their real
size, and each export corrects the accounting with each layer's real cost in
its context (``filesize`` and ``sizes``).

1. **Activations.** Activations cost no file bytes, so a search free to widen
   them would keep them all float. Every layer with a quantizable input starts
   at a base format (``uint8 asym``, ONNX Runtime's QDQ default); another
   8-bit per-tensor format is a free swap (same integer kernels); at most
   ``wide_activations`` layers keep a wider one (float, fp16, int16, per
   channel) where the measured gain is largest. They are measured in the
   context of int8 weights and every other activation at its choice; a set of
   swaps that is worse together than apart is dropped. The readers of one shared
   weight are one decision; the widest integer format ranks every decision and
   the other wide formats are measured on a shortlist; no symmetric swap is tried
   on an input that is never negative.
2. **Weight sensitivity.** A layer's 2- to 4-bit integer candidates carry the
   recovery method (GPTQ by default) that lowers the layer's own calibration
   output error, where one does (``recovered``): same bytes, less noise.
   Each layer's weights alone (every other layer
   float) are measured at two anchor formats (per-channel int8 and int4); the
   other candidates' output noise is predicted from their weight error times
   the measured output/weight noise ratio, and measured for real once the path
   shows which formats each layer takes near the budget (those whose steps cost
   noise per byte near the path's there).
3. **Greedy allocation.** Output noise powers of independent quantizers add
   approximately, so each layer's (bytes, noise) points are reduced to their
   lower convex hull and the layers are stepped down together, always taking
   the step that adds the least noise per byte saved (marginal analysis, as in
   classic bit allocation; AIMET's AMP and HAWQ-V3 order layers the same way:
   https://quic.github.io/aimet-pages/releases/latest/featureguide/mixed%20precision/amp.html,
   https://arxiv.org/abs/2011.10680). This gives a path of plans from float to
   the smallest.
4. **Refinement.** Errors do not add up exactly, so whole plans are evaluated
   for real: probes along the path and every candidate format applied
   uniformly (the front), then near the budget a local search that re-measures
   layers one step up or down in the context of the current plan and swaps
   bytes from where they cost the least error to where they buy the most. An
   error or metric budget bisects the path and then shaves bytes while the
   real figure holds. Under a size budget the chosen plan's size is its real
   export's; when it is over, the search chooses again below. The last choice, between
   the two best plans that fit and the best with its 8-bit activation swaps undone, is
   made on their exports run in a default ONNX Runtime session (``deployed``): its integer
   kernels round otherwise than the simulation, by as much as the plans differ. A third of
   the evaluation feeds is held back from all of this and that last choice, against the
   same-size uniform preset too, is made on them (``guard``): with few feeds the search
   finds plans whose errors cancel on the feeds it fits and nowhere else. When the plan
   loses more than a point of the task metric, a second search keeps
   activations float (their quantizers' bytes go to the weights) and the
   better plan wins.

Under a size budget the best plan maximizes the task metric (capped at the
float model's: more is noise), then minimizes the output error. The front is
every whole plan evaluated, reduced to its Pareto-optimal points: bytes up,
error strictly down. The seed breaks near-ties between layers, so a run is
reproducible.

Modules: ``options`` (budget, candidates, effort), ``points`` (evaluated plans, the front,
the result), ``measures`` (output error, sizes, per-layer sensitivity), ``candidates``
(formats a layer can take), ``recovered`` (recovery per layer and format), ``hull``
(convex hulls and the greedy order), ``state`` (evaluation and plans), ``filesize`` and
``sizes`` (the size accounting the state holds), ``overheads`` and ``activations`` (steps
run on the state), ``weightpath`` (weight sensitivities and the path), ``deployed`` (errors
of exports as deployed), ``guard`` (the held-back feeds), ``refine`` and ``runner`` (the whole run).
"""

from bitlens.core.search.hull import _greedy, _hull, _Ladder
from bitlens.core.search.measures import exported_size, file_bytes_of, output_error, sensitivities
from bitlens.core.search.options import (
    DEFAULT_ACTIVATION_FORMATS,
    DEFAULT_BASE_ACTIVATION,
    DEFAULT_RECOVERY,
    DEFAULT_REFERENCES,
    DEFAULT_SIZE_RATIO,
    DEFAULT_WEIGHT_FORMATS,
    FLOAT_NAME,
    Budget,
    SearchOptions,
)
from bitlens.core.search.points import Measuring, Point, SearchResult, Sensitivity, pareto_front
from bitlens.core.search.runner import search

__all__ = [
    "DEFAULT_ACTIVATION_FORMATS",
    "DEFAULT_BASE_ACTIVATION",
    "DEFAULT_RECOVERY",
    "DEFAULT_REFERENCES",
    "DEFAULT_SIZE_RATIO",
    "DEFAULT_WEIGHT_FORMATS",
    "FLOAT_NAME",
    "Budget",
    "Measuring",
    "Point",
    "SearchOptions",
    "SearchResult",
    "Sensitivity",
    "_Ladder",
    "_greedy",
    "_hull",
    "exported_size",
    "file_bytes_of",
    "output_error",
    "pareto_front",
    "search",
    "sensitivities",
]
