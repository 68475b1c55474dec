"""Which LSTM layers the ``ort-cpu`` target runs as ONNX Runtime's ``DynamicQuantizeLSTM``.

A per-layer choice in the plan: an LSTM whose choice is ``dynamic`` with ``uint8 asym``
activations and symmetric 8-bit integer weights (per tensor, or per channel on the gate
rows) is exported as that integer kernel (bitlens.core.export.dynamic_lstm has the layout
and the measurements). The ``ort-cpu`` presets choose it where it applies: on ddddocr's
CRNN recognizer its LSTM ran 3 to 30 times faster than the float LSTM alone, and the whole
W8A8 export went from 1.07 to 0.58 of ONNX Runtime's ``quantize_static`` file at the same
output error (26.8 vs 26.9 dB; ORT's 23.6). A plan can turn it off per layer
(``"dynamic": false``): the LSTM then reads a calibrated quantizer and runs in float.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from bitlens.core import targets
from bitlens.core.formats import Family, Format, Granularity
from bitlens.core.model.types import Layer, Storage, WeightInfo

if TYPE_CHECKING:
    from bitlens.core.plan import LayerChoice, Plan

# the activation the kernel computes in: uint8 with the range of each input (the engine's
# dynamic quantizer of this format follows the same rule)
KERNEL_ACTIVATION = "uint8 asym"


def eligible(layer: Layer, weight: Format | None, act: Format | None, dynamic: bool) -> bool:
    """``DynamicQuantizeLSTM`` computes exactly this choice's weights and input quantizer."""
    return (
        layer.op_type == "LSTM"
        and not layer.graph_path
        and len(layer.weights) == 2
        and all(w.storage is Storage.INITIALIZER and w.dtype == "float32" for w in layer.weights)
        and dynamic
        and act is not None
        and act.name == KERNEL_ACTIVATION
        and weight is not None
        and weight.family is Family.INT
        and weight.bits == 8
        and weight.signed
        and weight.symmetric
        and weight.granularity in (Granularity.TENSOR, Granularity.CHANNEL)
    )


def runs_kernel(layer: Layer, choice: LayerChoice, target: str) -> bool:
    """The export writes ``layer`` under ``choice`` as ``DynamicQuantizeLSTM``."""
    return (
        target == targets.ORT_CPU
        and choice.recovery is None
        and eligible(layer, choice.weight, choice.activation, choice.dynamic)
    )


def kernel_layers(plan: Plan) -> frozenset[str]:
    """The layers of ``plan`` the export writes as the kernel (:func:`runs_kernel`)."""
    return frozenset(
        name
        for name, c in plan.choices.items()
        if c.dynamic and runs_kernel(plan.info.layer(name), c, plan.target)
    )


def kernel_weight_bytes(w: WeightInfo, fmt: Format) -> int:
    """Bytes the kernel's layout stores for an LSTM weight ``[D, 4H, K]``: int8 codes, and a
    float32 scale and an int8 zero point per direction (per tensor) or per direction and
    gate row (per channel; a scale shared by the directions is stored once for each), as
    bitlens.core.export.dynamic_lstm writes them."""
    directions, rows = w.shape[0], w.shape[1]
    scales = directions if fmt.granularity is Granularity.TENSOR else directions * rows
    return math.prod(w.shape) + 5 * scales


def kernel_choice(layer: Layer, choice: LayerChoice) -> LayerChoice:
    """``choice`` marked dynamic where that makes ``layer`` the integer kernel."""
    if choice.dynamic or choice.recovery is not None:
        return choice
    if eligible(layer, choice.weight, choice.activation, True):
        return dataclasses.replace(choice, dynamic=True)
    return choice


def with_kernel(plan: Plan) -> Plan:
    """``plan`` with every LSTM that can run as the kernel marked dynamic."""
    changes = {}
    for name, c in plan.choices.items():
        new = kernel_choice(plan.info.layer(name), c)
        if new != c:
            changes[name] = new
    return plan.with_choices(changes) if changes else plan


def without_kernel(plan: Plan) -> Plan:
    """``plan`` with its kernel LSTMs back on a calibrated input quantizer and ONNX's float
    LSTM (what the presets chose before the kernel; for comparisons)."""
    changes = {}
    for name, c in plan.choices.items():
        if c.dynamic and eligible(plan.info.layer(name), c.weight, c.activation, True):
            changes[name] = dataclasses.replace(c, dynamic=False)
    return plan.with_choices(changes) if changes else plan
