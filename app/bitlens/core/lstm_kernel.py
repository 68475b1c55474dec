"""Which LSTM layers the ``ort-cpu`` target runs as ONNX Runtime's ``DynamicQuantizeLSTM``.

A per-layer choice in the plan: an LSTM whose choice is ``dynamic`` with ``uint8 asym``
activations and symmetric 8-bit integer weights (per tensor, or per channel on the gate
rows) is exported as that integer kernel (bitlens.core.export.dynamic_lstm has the layout
and the measurements). The ``ort-cpu`` presets choose it where it applies: on ddddocr's
CRNN recognizer its LSTM ran 3 to 30 times faster than the float LSTM alone, and the whole
W8A8 export went from 1.07 to 0.58 of ONNX Runtime's ``quantize_static`` file at the same
output error (26.8 vs 26.9 dB; ORT's 23.6). A plan can turn it off per layer
(``"dynamic": false``): the LSTM then reads a calibrated quantizer and runs in float.

The presets and the search choose the kernel only where it runs faster than ONNX's float
LSTM (:func:`pays`): on small LSTMs its per-step quantization of the hidden state costs more
than its int8 products save (session 12, below KERNEL_MIN_STEP_WEIGHTS).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core import targets
from bitlens.core.formats import Family, Format, Granularity
from bitlens.core.model.types import Layer, Storage, WeightInfo

if TYPE_CHECKING:
    from bitlens.core.plan import LayerChoice, Plan

# the activation the kernel computes in: uint8 with the range of each input (the engine's
# dynamic quantizer of this format follows the same rule)
KERNEL_ACTIVATION = "uint8 asym"
# Weights one step of one direction reads, 4H x (K + H) (W [4H, K] and R [4H, H]), from which
# the kernel ran faster than ONNX's float LSTM. Measured (session 12, ONNX Runtime 1.31.1's
# profiler, one thread, fastest node time of 3 x 30 runs, load 23-25) on tests/builders.py
# lstm_recognizer (bidirectional, batch 1, 32-64 steps), kernel / float LSTM node time:
# K=64: H 64 1.37, H 96 1.10-1.33, H 112 0.97-1.02 (once 1.84), H 128 0.87-0.89,
# H 160 0.77-0.79 (once 1.16), H 192 0.62; K=16: H 96 1.24, H 112 1.10, H 128 0.92-0.97;
# K=256: H 64 0.97, H 96 0.61-0.80, H 128 0.84 (step weights 73,728-81,920 were ties,
# 98,304 and more won). The recurrent product R h runs once per step whatever the batch
# of steps, so the crossover follows the step's weights rather than the sequence length.
KERNEL_MIN_STEP_WEIGHTS = 96 * 1024


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


def step_weights(layer: Layer) -> int:
    """Weights one step of one direction of an LSTM reads: 4H x (K + H), from W [D, 4H, K]
    and R [D, 4H, H]; 0 where the shapes are not those."""
    shapes = [w.shape for w in layer.weights]
    if layer.op_type != "LSTM" or len(shapes) != 2 or any(len(s) != 3 for s in shapes):
        return 0
    (_, rows, k), (_, _, h) = shapes
    return int(rows) * (int(k) + int(h))


def pays(layer: Layer) -> bool:
    """The kernel runs ``layer`` faster than ONNX's float LSTM (KERNEL_MIN_STEP_WEIGHTS)."""
    return step_weights(layer) >= KERNEL_MIN_STEP_WEIGHTS


def stays_float(layer: Layer, choice: LayerChoice, target: str) -> bool:
    """``choice`` could run ``layer`` as the kernel, which the presets and the search leave
    out because it would run slower than the float LSTM (:func:`pays`)."""
    return (
        target == targets.ORT_CPU
        and not choice.dynamic
        and choice.recovery is None
        and not pays(layer)
        and eligible(layer, choice.weight, choice.activation, True)
    )


def float_note(plan: Plan) -> list[str]:
    """One line for the LSTMs :func:`stays_float` keeps on ONNX's float LSTM, saying why."""
    names = [n for n, c in plan.choices.items()
             if stays_float(plan.info.layer(n), c, plan.target)]  # fmt: skip
    if not names:
        return []
    layer = plan.info.layer(names[0])
    what = f"{len(names)} LSTMs" if len(names) > 1 else f"LSTM {names[0]!r}"
    return [
        f"{what} kept as ONNX's float LSTM (int8 weights dequantized): DynamicQuantizeLSTM "
        f"ran slower than it below {KERNEL_MIN_STEP_WEIGHTS:,} weights per step and direction "
        f"(here {step_weights(layer):,}: hidden 128 x 64 inputs is the first that gained)"
    ]


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
    """``choice`` marked dynamic where that makes ``layer`` the integer kernel and the kernel
    runs faster than the float LSTM (:func:`pays`)."""
    if choice.dynamic or choice.recovery is not None:
        return choice
    if pays(layer) and eligible(layer, choice.weight, choice.activation, True):
        return dataclasses.replace(choice, dynamic=True)
    return choice


def with_kernel(plan: Plan) -> Plan:
    """``plan`` with every LSTM that can run as the kernel, and gains by it, marked dynamic."""
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


def kernel_params(q_scale: np.ndarray, directions: int, rows: int) -> np.ndarray:
    """The kernel's scale layout: ``[D]`` per tensor, ``[D, 4*hidden]`` per gate row (the
    export stores it, the engine feeds it: bitlens.core.engine.lstm_nodes)."""
    s = np.asarray(q_scale, np.float32)
    if s.size == 1:
        return np.full((directions,), s.reshape(()), np.float32)
    if s.size == rows:  # one scale per gate row, shared by the directions
        return np.broadcast_to(s.reshape(1, rows), (directions, rows)).copy()
    if s.size == directions * rows:
        return s.reshape(directions, rows)
    raise ValueError(f"scale of {s.size} values for {directions} x {rows} rows")
