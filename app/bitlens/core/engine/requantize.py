"""Layer quantizers that repeat a deployment target's quantizer exactly, left out of the
simulation graph.

Under the ort-cpu target a Conv's output (after its Relu) is requantized where it is
produced (bitlens.core.targets), and the next layer's own quantizer on that tensor gets the
very same format and range (Ranges.layer_range: the export leaves it out for that reason).
Quantizing a value that is already on the grid is an identity: the value is
``c * s`` rounded to float32 for an integer code ``c`` with ``|c| <= 255``, so
``(c * s) / s`` is within ``255 * 2**-23`` of ``c``, rounds back to ``c``, and the same
clamp, subtraction and product give the same float32 value. The simulation graph still
computed it: six elementwise passes (Div, Round, Add, Clip, Sub, Mul) per layer, about a
third of a W8A8 run of a CRNN. Only the simulation graph leaves them out; the local graphs
read float activations and keep every layer quantizer.
"""

from __future__ import annotations

from collections.abc import Mapping

from bitlens.core import targets
from bitlens.core.engine import quantizers
from bitlens.core.formats import Granularity
from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import LayerChoice
from bitlens.core.recovery import Recovery


def redundant_quantizers(
    info: ModelInfo,
    choices: Mapping[str, LayerChoice],
    placed: Mapping[str, targets.TensorQuantizer],
) -> tuple[tuple[str, str], ...]:
    """(layer, activation) pairs whose static integer quantizer equals the target's quantizer
    on that activation (same per-tensor format; the range is the target's by
    Ranges.layer_range), in layer order."""
    if not placed:
        return ()
    out: list[tuple[str, str]] = []
    for layer in info.layers:
        choice = choices.get(layer.name)
        if choice is None or layer.graph_path:
            continue
        fmt = choice.activation
        if fmt is None or choice.dynamic or choice.recovery is Recovery.SMOOTH:
            continue  # SmoothQuant's quantizer sees the scaled activation, not the target's
        if fmt.granularity is not Granularity.TENSOR or quantizers.kind_of(fmt) != "int":
            continue
        for act in layer.activations:
            q = placed.get(act)
            if q is not None and q.format == fmt:
                out.append((layer.name, act))
    return tuple(out)
