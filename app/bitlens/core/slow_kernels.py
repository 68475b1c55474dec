"""Layers whose ONNX Runtime CPU integer kernel is slower than their float kernel, whatever
their formats: such a layer stays float in the ``ort-cpu`` target (bitlens.core.targets
kernel_format), the presets leave its input unquantized (targets.idle_input_quantizer), and the
export's report and ``eval`` say why (bitlens.core.plan_checks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bitlens.core.model.types import Layer

# A group-1 Conv with a kernel larger than 1 x 1 reading fewer input values per output than
# this (input channels x kernel area) runs slower as QLinearConv (see slower_as_integer).
FEW_INPUTS = 64


def slower_as_integer(layer: Layer) -> str | None:
    """Why ONNX Runtime's integer kernel for ``layer`` is slower than its float kernel, None
    when it is not known to be.

    A Conv with a single output channel: QLinearConv measured 1.2x to 50x slower than the
    float Conv on ONNX Runtime 1.31 CPU (1 x 256 filters over 22k samples, 1 x 33 x 3 x 3 and
    1 x 32 x 7 x 3 kernels: basic-pitch's CQT low-pass filters and output heads), while 2 or
    more output channels ran faster as int8. Such a layer stays float (its weights folded to
    the plan's values), so its output gets no requantization either.

    Not a 1 x 1 kernel: the six 1 x 96 x 1 x 1 objectness/class heads of ddddocr's
    common_det (YOLOX-style) ran as QLinearConv in 153 us all together in ONNX Runtime's own
    QDQ file, against 751 us for their float path in the export (DequantizeLinear, NCHWc
    reorders, float Conv, the Clip guard, a float Concat; per-node profile, one thread).

    A group-1 Conv with a kernel larger than 1 x 1 and under FEW_INPUTS input values per
    output (an image's stem: 1 or 3 channels, 3 x 3): QLinearConv gathers so few values per
    output (im2col) that it ran 2-9x slower than the float Conv, which ONNX Runtime runs on
    its NCHWc kernel for unblocked inputs (session 13, ONNX Runtime 1.31.1's profiler, one
    thread, fastest of 40 runs per node, a single conv with its input quantized or its
    output; QLinearConv against Conv, us): 3 -> 16 channels 3 x 3 stride 2 at 96x128 90 / 29,
    at 384x512 1949 / 619, 3 -> 32 at 640x640 21691 / 2491, 1 -> 16 at 128x96 92 / 14
    (trueocr's detector's stem), 4 -> 16 3 x 3 at 96x128 226 / 144; with 8 input channels
    (72 values) 225 / 284, ResNet's 3 -> 64 7 x 7 stem (147 values) 1431 / 1615 and a
    4 -> 16 1 x 1 conv 60 / 79 the integer kernel wins. Counting the quantizer the float
    stem's output needs instead of its input's, the stem alone ran 1.4-3.3x slower as
    integer. Such a layer stays float and its input unquantized (an image), which the W8A8
    export also rounds no more."""
    shape = layer.weights[0].shape if layer.weights else ()
    if layer.op_type != "Conv" or len(shape) < 3:
        return None
    area = int(np.prod(shape[2:]))
    if shape[0] == 1 and area > 1:
        return (
            "it has one output channel and a kernel larger than 1 x 1, where ONNX Runtime's "
            "QLinearConv runs slower than its float Conv"
        )
    if layer.group == 1 and area > 1 and shape[1] * area < FEW_INPUTS:
        kernel = " x ".join(str(d) for d in shape[2:])
        return (
            f"it reads {shape[1]} input channel(s) through a {kernel} kernel ({shape[1] * area} "
            f"values per output, under {FEW_INPUTS}), where ONNX Runtime's QLinearConv ran "
            "2-9x slower than its float Conv"
        )
    return None
