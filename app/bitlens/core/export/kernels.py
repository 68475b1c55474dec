"""Which layers the export writes as QDQ groups for ONNX Runtime's integer kernels."""

from __future__ import annotations

from collections.abc import Mapping

from bitlens.core.export import activations
from bitlens.core.model.types import Layer, ModelInfo
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery import Recovery
from bitlens.core.relu_reader import relu_input
from bitlens.core.targets import TensorQuantizer, kernel_format, kernel_weight_on_target


def integer_kernel_candidate(layer: Layer, choice: LayerChoice) -> bool:
    """2- to 8-bit integer weights (not blocked) with a calibrated 8-bit activation on
    Conv/MatMul/Gemm (not under AWQ, whose multiply after the decode keeps the weight out of
    the kernel)."""
    return choice.recovery is not Recovery.AWQ and kernel_format(
        layer, choice.weight, choice.activation, choice.dynamic
    )


# Ops ONNX Runtime moves a QuantizeLinear back across (QDQ propagation) or folds into the
# kernel before it, so a Conv whose output reaches an 8-bit quantizer through them fuses.
PASS_TO_Q = frozenset(
    {"Relu", "Clip", "MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}
)


def integer_kernel_layers(
    info: ModelInfo, plan: Plan, placed: Mapping[str, TensorQuantizer] | None = None
) -> set[str]:
    """Layers written as QDQ groups for ONNX Runtime's integer kernels.

    Conv fuses (QLinearConv) only when its result is requantized: its output must
    reach a tensor the plan quantizes to 8 bits through ops that keep the grid
    (``PASS_TO_Q``). Otherwise the Conv would run in float on weights dequantized at
    every run, so its weights are folded instead (same values, float speed).
    MatMul (MatMulIntegerToFloat) and Gemm (QGemm) also fuse with a float output, except
    before a Relu (bitlens.core.relu_reader), where they too need the requantized output.
    """
    q8 = {
        act
        for name, choice in plan.choices.items()
        if choice.activation is not None
        and not choice.dynamic
        and activations.uses_qdq(choice.activation, False)
        and choice.activation.bits == 8
        for act in info.layer(name).activations
    } | {t for t, q in (placed or {}).items() if q.format.bits == 8}
    consumers = info.main_readers
    outputs = {t.name for t in info.outputs}
    out: set[str] = set()
    for name, choice in plan.choices.items():
        layer = info.layer(name)
        if not integer_kernel_candidate(layer, choice) or not kernel_weight_on_target(
            choice.weight, plan.target
        ):
            continue
        t = layer.outputs[0] if layer.op_type == "Conv" else relu_input(info, layer, outputs)
        if t is None:
            out.add(name)
            continue
        for _ in range(len(info.nodes)):
            if t in q8:
                out.add(name)
                break
            users = consumers.get(t, ())
            if len(users) != 1 or users[0].op_type not in PASS_TO_Q:
                break
            t = users[0].outputs[0]
    return out
