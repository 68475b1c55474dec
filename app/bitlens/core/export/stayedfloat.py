"""Messages for layers whose plan asked for an int8 kernel that ONNX Runtime did not run.

For the "ort-cpu" and "none" targets each such layer is a warning of its own: the export was
meant to run integer kernels on this runtime. For the "tensorrt" target it is what the file is
for: TensorRT requantizes a layer's output inside its own fused kernel, so the file writes no
QuantizeLinear after a weighted layer (NVIDIA's Q/DQ placement recommendations,
https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html),
and ONNX Runtime's CPU provider forms QLinearConv / QGemm only from a DequantizeLinear -> op ->
QuantizeLinear group, so it runs those layers in float. One line says so with the count (a
YOLO-style detector has 83 convolutions, which read as 83 warnings before).
"""

from __future__ import annotations

from collections.abc import Sequence

from bitlens.core import targets

# How many layer names the folded line shows before "and N more".
SHOWN = 3


def stayed_float_notes(target: str, stayed: Sequence[tuple[str, str]]) -> list[str]:
    """The report lines for ``stayed``: (layer, kernel ONNX Runtime ran) per layer whose plan
    asked for int8 but that ran without an integer kernel, in graph order."""
    if target != targets.TENSORRT:
        return [
            f"warning: layer {name!r} stayed float although its plan asked for int8: "
            f"ONNX Runtime ran {ran} (target {target!r}"
            + (": its output is not requantized)" if target == targets.NONE else ")")
            for name, ran in stayed
        ]
    if not stayed:
        return []
    names = ", ".join(repr(name) for name, _ in stayed[:SHOWN])
    more = f" and {len(stayed) - SHOWN} more" if len(stayed) > SHOWN else ""
    return [
        f"{len(stayed)} layer(s) planned as int8 ran in float on this ONNX Runtime session "
        f"({names}{more}), as expected for target 'tensorrt': TensorRT requantizes their "
        "outputs inside its fused int8 kernels, so the file has no QuantizeLinear after them, "
        "and ONNX Runtime's CPU provider builds integer kernels only from DequantizeLinear -> "
        "op -> QuantizeLinear groups"
    ]
