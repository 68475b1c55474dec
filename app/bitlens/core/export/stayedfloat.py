"""Messages for layers whose plan asked for an integer kernel that ONNX Runtime did not run.

For the "ort-cpu" and "none" targets each such layer is a warning of its own: the export was
meant to run integer kernels on this runtime. For the "tensorrt" target it is what the file is
for: TensorRT requantizes a layer's output inside its own fused kernel, so the file writes no
QuantizeLinear after a weighted layer (NVIDIA's Q/DQ placement recommendations,
https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html),
and ONNX Runtime's CPU provider forms QLinearConv / QGemm only from a DequantizeLinear -> op ->
QuantizeLinear group, so it runs those layers in float. One line says so with the count (a
YOLO-style detector has 83 convolutions, which read as 83 warnings before).

2- to 7-bit weights reach ONNX Runtime's 8-bit kernels through a Cast it folds at load, which only
the "ort-cpu" target writes (core/export/kernels.py ``_kernel_on_target``): on the others such
a layer's weights are folded to float by design, said once with the layers' real format.
"""

from __future__ import annotations

from collections.abc import Sequence

from bitlens.core import targets
from bitlens.core.formats import Family, Format
from bitlens.core.layer_names import listed

# How many layer names the folded line shows before "and N more".
SHOWN = 3

Stayed = tuple[str, str, Format]  # layer, kernel ONNX Runtime ran, the plan's weight format


def code_type(fmt: Format) -> str:
    """The integer type a kernel format's codes are: int8, uint8, int4, uint3, ..., ternary,
    binary."""
    if fmt.family in (Family.TERNARY, Family.BINARY):
        return fmt.family.value
    return f"{'' if fmt.signed else 'u'}int{fmt.bits}"


def stayed_float_notes(target: str, stayed: Sequence[Stayed]) -> list[str]:
    """The report lines for ``stayed``: per layer whose plan asked for an integer kernel (2- to
    8-bit integer weights next to 8-bit activations) but that ran without one, in graph
    order."""
    narrow = [s for s in stayed if not targets.kernel_weight_on_target(s[2], target)]
    stayed = [s for s in stayed if s not in narrow]
    notes = _folded_by_target(target, narrow)
    if target != targets.TENSORRT:
        return notes + [
            f"warning: layer {name!r} stayed float although its plan asked for "
            f"{code_type(fmt)}: ONNX Runtime ran {ran} (target {target!r}"
            + (": its output is not requantized)" if target == targets.NONE else ")")
            for name, ran, fmt in stayed
        ]
    if not stayed:
        return notes
    return [
        *notes,
        f"{len(stayed)} layer(s) planned as {_types(stayed)} ran in float on this ONNX Runtime "
        f"session ({listed([s[0] for s in stayed], SHOWN)}), as expected for target 'tensorrt': TensorRT requantizes "
        "their outputs inside its fused int8 kernels, so the file has no QuantizeLinear after "
        "them, and ONNX Runtime's CPU provider builds integer kernels only from "
        "DequantizeLinear -> op -> QuantizeLinear groups",
    ]


def _folded_by_target(target: str, narrow: Sequence[Stayed]) -> list[str]:
    if not narrow:
        return []
    return [
        f"{len(narrow)} layer(s) with {_types(narrow)} weights ran in float "
        f"({listed([s[0] for s in narrow], SHOWN)}): for target {target!r} the export writes them folded to float; "
        "codes narrower than 8 bits reach ONNX Runtime's 8-bit integer kernels (through a "
        "Cast it folds at load) only with target 'ort-cpu'"
    ]


def _types(stayed: Sequence[Stayed]) -> str:
    return " or ".join(dict.fromkeys(code_type(fmt) for _, _, fmt in stayed))

