"""Deployment targets: which tensors besides the plan's layer inputs get 8-bit quantizers.

A plan chooses formats per layer (weights and the activations a layer reads).
A runtime's integer kernels need more: ONNX Runtime's CPU provider fuses
``DequantizeLinear -> Conv -> QuantizeLinear`` into ``QLinearConv`` only when
the convolution's *output* is requantized, and has QLinear forms of Add, Mul,
Sigmoid, Concat, LeakyRelu and the average pools that need every input and
the output quantized. A target names those extra tensors for a given plan; the
engine simulates exactly them (calibrated like any other activation) and the
exporter writes exactly them, so the window shows the error of what is
deployed.

The placement follows ONNX Runtime's own QDQ quantizer
(onnxruntime/python/tools/quantization/registry.py and operators/):

* a Conv with one output channel and a kernel larger than 1 x 1 is not an integer-kernel
  layer (see :func:`slower_as_integer`: QLinearConv measured slower than float there);
* Conv/MatMul/Gemm inputs are the plan's layer quantizers; a Conv's output is
  quantized too (``QDQConv``), after a single-consumer Relu/Clip, which ORT
  then removes (``QDQRemovableActivation``: with an asymmetric uint8 range
  starting at 0, the QuantizeLinear's saturation *is* the Relu);
* Add, Mul, Sigmoid, Concat, LeakyRelu, AveragePool, GlobalAveragePool get
  quantizers on every input and on the output (``QLinearBinaryOp``,
  ``QLinearActivation``, ``QLinearConcat``, ``QLinearPool``) when all their
  inputs are already quantized;
* MaxPool, Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Slice and nearest
  Resize keep the grid of their input: their output is quantized with the
  input's scale and zero point (``QDQDirect8BitOp``: ``quantize_output_same_as_input``),
  so ORT drops the pair and runs them on uint8 data, and the simulated
  requantization is an exact identity.

Graph outputs, tensors read inside If/Loop/Scan bodies and non-float tensors
are never quantized, and an op with a constant data input (a bias Add, a
scale Mul) stays float, as do the ops next to float layers, with one
exception: the Add of a paddle-style HardSwish ``x * Clip(x + 3, 0, 6) / 6``
(Paddle2ONNX's form). With ``x`` already quantized on an asymmetric uint8
grid (a conv output), its Clip's output is quantized (ORT's ``ClipQuantFusion`` removes a
Clip whose range the QuantizeLinear's saturation already keeps), the
scalar 3 is written as a DequantizeLinear of one code at scale 3 (exactly
3.0, see :func:`scalar_code`: nothing changes in the simulation), so the
Add runs as ``QLinearAdd`` and the Mul, both inputs then quantized, as
``QLinearMul``. The Div by 6 (any Div or Mul of a quantized tensor by a
positive scalar constant) is quantized on its input's grid scaled by the
constant, which returns the input's codes: the export writes it as one
DequantizeLinear of those codes (bitlens.core.export.rescale), so nothing of
the HardSwish runs in float. Where ``x`` comes from an unfolded
BatchNormalization (PicoDet, PP-LCNet loaded with ``fold_bn=False``; by default
the loader folds it into the Conv, bitlens.core.model.bn_fold) it is not
quantized for this: the extra quantizer measured slower and less accurate. ORT 1.31 fuses nothing around
the ``HardSwish`` op (it splits it into a float HardSigmoid and Mul) or
around ``HardSigmoid``, so those forms stay float.

The "tensorrt" target adds no tensors: TensorRT places the requantization
of a layer's output itself, fusing it into the next layer's input quantizer
(NVIDIA's "Q/DQ layer placement recommendations": quantize the inputs of
quantizable layers). Its rules are about formats (see :func:`bitlens.core.plan_checks.check_plan`):
symmetric int8 activations with zero point 0, per tensor, and symmetric int8
weights per output channel. "none" adds nothing and checks nothing: only
the plan's layer inputs are quantized (Bitlens 1.0 behaviour).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.errors import PlanError
from bitlens.core.formats import Family, Format, Granularity

if TYPE_CHECKING:
    from bitlens.core.model.types import Layer, NodeInfo
    from bitlens.core.plan import Plan

ORT_CPU = "ort-cpu"
TENSORRT = "tensorrt"
NONE = "none"
TARGETS: tuple[str, ...] = (ORT_CPU, TENSORRT, NONE)
DEFAULT_TARGET = ORT_CPU
TARGET_TITLES = {
    ORT_CPU: "ONNX Runtime CPU (QLinearConv, QLinearAdd, ...)",
    TENSORRT: "TensorRT / CUDA int8 (symmetric int8, zero point 0)",
    NONE: "none (quantize layer inputs only)",
}

KERNEL_OPS = frozenset({"Conv", "MatMul", "Gemm"})
# Integer weight widths of integer-kernel layers: every uniform width from 2 to 8 bits.
# Narrower codes reach the 8-bit DequantizeLinear the fusions need through a constant
# subgraph ONNX Runtime folds into an int8/uint8 initializer when the session starts, before
# its QDQ fusions (bitlens.core.export.weights): 4-bit codes stored as ONNX INT4/UINT4 and
# Cast (opset 21); 2-, 3-, 5-, 6- and 7-bit codes (and 4-bit ones below opset 21) stored as an
# n-bit packed stream unpacked by opset-13 operators and Cast. The layer then runs as
# QLinearConv / QLinearMatMul / QGemm at its own file size. Measured on ONNX Runtime 1.31.1
# CPU with onnx.helper models (tests/core/test_export_kernel_widths.py): Conv, MatMul and
# Gemm, per tensor and per channel, signed and unsigned, every width fuses, with outputs
# bit-identical to the same codes stored as int8/uint8.
KERNEL_WEIGHT_BITS = frozenset(range(2, 9))
# ORT removes these before a QuantizeLinear whose range they cannot widen.
ABSORBED = frozenset({"Relu", "Clip"})
# QLinear forms with their own output scale: every data input and the output quantized.
REQUANTIZING = frozenset(
    {"Add", "Mul", "Sigmoid", "Concat", "LeakyRelu", "AveragePool", "GlobalAveragePool"}
)
# Ops that only move or select values: the output keeps the input's grid.
# Relu belongs here too: zero is exactly on an asymmetric grid, so Relu of a dequantized value is
# a value of the same grid.
SAME_GRID = frozenset(
    {
        "MaxPool",
        "Reshape",
        "Transpose",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Slice",
        "Resize",
        "Relu",
    }
)
# Ops that only select or reorder values: a layer input's quantizer moves up through them.
MOVABLE = frozenset({"Slice", "Concat", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"})
# Ops whose every input is data (the others read data from input 0 only; the rest are
# shapes, axes, scales).
_ALL_INPUTS = frozenset({"Add", "Mul", "Concat"})


@dataclass(frozen=True)
class TensorQuantizer:
    """An 8-bit quantizer the target adds where ``tensor`` is produced; every consumer reads
    the quantized value."""

    tensor: str
    format: Format
    range_of: str  # the tensor whose calibrated range sets scale and zero point
    reason: str  # why the target quantizes it, for reports
    # The range is range_of's times this (a Div or Mul by a positive constant: see _rescale).
    range_scale: float = 1.0

    @property
    def grid(self) -> tuple:
        """What settles the quantized values (not ``reason``, which is for reports)."""
        return (self.tensor, self.format, self.range_of, self.range_scale)


Placement = Mapping[str, TensorQuantizer]  # tensor -> quantizer, in topological order
Scalar = Callable[[str], float | None]  # a main-graph scalar float constant's value, else None


def check_target(name: str) -> str:
    if name not in TARGETS:
        raise PlanError(f"unknown deployment target {name!r}; known: {', '.join(TARGETS)}")
    return name


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
    reorders, float Conv, the Clip guard, a float Concat; per-node profile, one thread)."""
    shape = layer.weights[0].shape if layer.weights else ()
    if layer.op_type == "Conv" and shape[:1] == (1,) and int(np.prod(shape[2:])) > 1:
        return (
            "it has one output channel and a kernel larger than 1 x 1, where ONNX Runtime's "
            "QLinearConv runs slower than its float Conv"
        )
    return None


def kernel_format(layer: Layer, weight: Format | None, act: Format | None, dynamic: bool) -> bool:
    """An integer-kernel layer: Conv/MatMul/Gemm in the main graph with 2- to 8-bit integer,
    ternary or binary weights per tensor or channel (:func:`kernel_weight`) and a calibrated
    8-bit per-tensor integer activation, whose integer kernel is not known to be slower than
    float (:func:`slower_as_integer`)."""
    return slower_as_integer(layer) is None and _kernel_shaped(layer, weight, act, dynamic)


def kernel_weight_on_target(weight: Format | None, target: str) -> bool:
    """Whether ``target`` writes ``weight`` (a :func:`kernel_format` layer's) for the integer
    kernel: narrower weights reach the 8-bit kernel through a constant Cast ONNX Runtime
    folds at load (:data:`KERNEL_WEIGHT_BITS`), written with ``ort-cpu`` only; other targets
    fold them to float and keep integer kernels for 8-bit weights."""
    return target == ORT_CPU or (weight is not None and weight.bits == 8)


def idle_input_quantizer(
    layer: Layer, weight: Format | None, act: Format | None, target: str
) -> bool:
    """Whether an 8-bit input quantizer on ``layer`` only costs on ``target``: its formats fit
    an integer kernel but ONNX Runtime's is slower there (:func:`slower_as_integer`), so the
    layer runs as a float Conv and the quantizer adds a Q/DQ pair and its rounding error. The
    presets leave such a layer's input float."""
    return (
        target == ORT_CPU
        and slower_as_integer(layer) is not None
        and _kernel_shaped(layer, weight, act, False)
    )


def _kernel_shaped(layer: Layer, weight: Format | None, act: Format | None, dynamic: bool) -> bool:
    return (
        layer.op_type in KERNEL_OPS
        and not layer.graph_path
        and len(layer.weights) == 1
        and weight is not None
        and act is not None
        and not dynamic
        and kernel_weight(weight)
        and act.family is Family.INT
        and act.bits == 8
        and act.granularity is Granularity.TENSOR
        and unfused_pattern(layer, weight) is None
    )


def unfused_pattern(layer: Layer, weight: Format) -> str | None:
    """Why ONNX Runtime makes no integer kernel of this MatMul/Gemm's QDQ group whatever
    the formats (None when nothing in the layer's shape prevents one). Such a layer keeps
    its weights folded (a float kernel), so what the search and the export predict is what
    runs. Rules from GemmNodeGroupSelector / MatMulNodeGroupSelector in
    onnxruntime/core/optimizer/qdq_transformer/selectors_actions/qdq_selectors.cc and the
    kernels they make (ONNX Runtime 1.31):

    - the weight is the first operand (``Gemm(W, x)``, ``MatMul(W, x)``): an int8 weight
      there with a uint8 activation as the second fails "if A is signed int, B must be
      signed int", and a per-channel scale on A has no kernel (measured: Gemm and MatMul
      ran float);
    - a Gemm with a bias and alpha or beta not 1: the int32 bias is not written (it would
      need beta), and the selector fuses only when every input, C included, is a
      DequantizeLinear output ("beta needs to be 1.0");
    - a MatMul whose weight has more than 2 dims ([G, K, N], or [1, K, N] broadcast) with
      per-channel weights: the group still fuses, but QLinearMatMul / MatMulIntegerToFloat
      then refuse the 1-D zero point at run time ("weight zero point must be a scalar, 1D
      tensor of size 1, or last to second dimension is 1":
      onnxruntime/core/providers/cpu/quantization/quantize_linear_matmul.cc), so the W8A8
      file could not run at all."""
    if layer.op_type not in ("MatMul", "Gemm"):
        return None
    if layer.activations[:1] == layer.inputs[1:2]:
        return "its weight is the first operand, which ONNX Runtime's integer kernels do not take"
    if layer.op_type == "Gemm" and layer.scaled and layer.biases:
        return "a Gemm with a bias and alpha or beta not 1 has no integer kernel in ONNX Runtime"
    if weight.granularity is Granularity.CHANNEL and any(len(w.shape) > 2 for w in layer.weights):
        return (
            "per-channel weights with more than 2 dims, which ONNX Runtime's integer MatMul "
            "kernels refuse (per-tensor weights fuse)"
        )
    return None


def kernel_weight(weight: Format) -> bool:
    """Weights an integer kernel can take: 2- to 8-bit integers (:data:`KERNEL_WEIGHT_BITS`),
    ternary and binary ones (codes -1/0/+1 and -1/+1 times alpha: an int8 DequantizeLinear
    gives exactly the simulated ``float32(code) * alpha``), per tensor or per channel."""
    if weight.granularity is Granularity.BLOCK:
        return False
    if weight.family is Family.INT:
        return weight.bits in KERNEL_WEIGHT_BITS
    return weight.family in (Family.TERNARY, Family.BINARY)


def scalar_code(value: float) -> tuple[int, float, int]:
    """(code, scale, zero point) of a uint8 DequantizeLinear giving exactly ``value``:
    (code - zero point) is 1, -1 or 0, so the float32 product is ``value`` itself."""
    v = float(np.float32(value))
    if v > 0:
        return 1, v, 0
    if v < 0:
        return 0, -v, 1
    return 0, 1.0, 0


def _absorbed_end(t: str, consumers: Mapping[str, list[NodeInfo]], outputs: set[str]) -> str:
    """The tensor after the single-consumer Relu/Clip chain below ``t`` (``t`` itself
    when none): ORT removes those before a QuantizeLinear whose range they cannot widen."""
    while True:
        users = consumers.get(t, [])
        if len(users) != 1 or users[0].op_type not in ABSORBED or t in outputs:
            return t
        t = users[0].outputs[0]


def scalar_operand(n: NodeInfo, scalar: Scalar | None) -> tuple[str, str, float] | None:
    """(data input, constant input, value) of an Add of a tensor and a finite scalar
    constant; None for any other node."""
    if scalar is None or n.op_type != "Add" or len(n.inputs) != 2 or not all(n.inputs):
        return None
    for k in (0, 1):
        value = scalar(n.inputs[k])
        if value is not None and np.isfinite(value) and scalar(n.inputs[1 - k]) is None:
            return n.inputs[1 - k], n.inputs[k], float(value)
    return None


def scalar_inputs(plan: Plan, placed: Placement, scalar: Scalar | None) -> dict[str, float]:
    """Constant -> value of the scalars :func:`placement` lets into a QLinearAdd: the
    export writes each as a DequantizeLinear of :func:`scalar_code` (an exact identity)."""
    info = plan.info
    main = [n for n in info.nodes if not n.graph_path]
    consumers: dict[str, list[NodeInfo]] = {}
    for n in main:
        for t in n.inputs:
            if t:
                consumers.setdefault(t, []).append(n)
    outputs = {t.name for t in info.outputs}
    out: dict[str, float] = {}
    for n in main:
        found = scalar_operand(n, scalar)
        if found is None or not n.outputs or found[0] not in placed:
            continue
        if _absorbed_end(n.outputs[0], consumers, outputs) in placed:
            out[found[1]] = found[2]
    return out


def placement_key(plan: Plan) -> tuple:
    """What :func:`placement` reads of ``plan``: the target and the integer-kernel layers
    with their activation formats. Plans with the same key get the same placement (a
    weight moved between 4 and 2 bits, or per tensor and per channel, keeps it)."""
    if plan.target != ORT_CPU:
        return (plan.target,)
    kernels = []
    for layer in plan.info.layers:
        c = plan[layer.name]
        if kernel_format(layer, c.weight, c.activation, c.dynamic):
            kernels.append((layer.name, c.activation))
    return (plan.target, tuple(kernels))


def placement(
    plan: Plan,
    attribute: Callable[[NodeInfo, str], object | None] | None = None,
    scalar: Scalar | None = None,
) -> dict[str, TensorQuantizer]:
    """The extra tensor quantizers ``plan.target`` needs for the plan's per-layer choices.

    ``attribute(node, name)`` reads a node attribute (Resize's mode), None when the node
    does not set it; without ``attribute`` Resize stays float. ``scalar(tensor)`` is the
    value of a main-graph scalar float constant, None for anything else; without it a
    HardSwish's Add stays float.
    """
    if plan.target != ORT_CPU:
        return {}
    info = plan.info
    main = [n for n in info.nodes if not n.graph_path]
    producer: dict[str, NodeInfo] = {o: n for n in main for o in n.outputs if o}
    consumers: dict[str, list[NodeInfo]] = {}
    for n in main:
        for t in n.inputs:
            if t:
                consumers.setdefault(t, []).append(n)
    inner = {t for n in info.nodes if n.graph_path for t in n.inputs}
    outputs = {t.name for t in info.outputs}
    inputs = {t.name: t for t in info.inputs}

    def is_float(t: str) -> bool:
        vi = info.value_info.get(t) or inputs.get(t)
        return vi is None or vi.dtype == "float32"

    def quantizable(t: str) -> bool:
        return (
            bool(t)
            and t not in outputs
            and t not in inner
            and is_float(t)
            and (t in producer or t in inputs)
        )

    # Tensors the plan's integer-kernel layers already quantize, with the format they use.
    layer_q: dict[str, Format] = {}
    kernels: list[Layer] = []
    for layer in info.layers:
        c = plan[layer.name]
        a = c.activation
        if kernel_format(layer, c.weight, a, c.dynamic):
            assert a is not None
            kernels.append(layer)
            for act in layer.activations:
                layer_q.setdefault(act, a)

    out: dict[str, TensorQuantizer] = {}

    def add(t: str, fmt: Format, range_of: str, reason: str, range_scale: float = 1.0) -> None:
        if t not in out:
            out[t] = TensorQuantizer(t, fmt, range_of, reason, range_scale)

    def available(t: str) -> Format | None:
        if t in out:
            return out[t].format
        return layer_q.get(t)

    # Conv outputs (after a Relu/Clip ORT folds into the requantization).
    for layer in kernels:
        if layer.op_type != "Conv":
            continue
        fmt = layer_q[layer.activations[0]]
        t = layer.outputs[0]
        if fmt.family is Family.INT and not fmt.signed:  # asymmetric uint8: Relu absorbed
            t = _absorbed_end(t, consumers, outputs)
        if quantizable(t):
            add(t, fmt, t, f"output of {layer.name} ({layer.op_type}), so it runs as QLinearConv")

    # Ops with QLinear or uint8 forms, in topological order, when all their inputs are quantized.
    for n in main:
        if _rescale(n, scalar, out, quantizable, add):
            continue
        if n.op_type not in REQUANTIZING and n.op_type not in SAME_GRID:
            continue
        if _scalar_add(n, scalar, consumers, outputs, quantizable, available, add):
            continue
        # Only nearest Resize (the default mode) keeps values on the input's grid.
        if n.op_type == "Resize" and (
            attribute is None or attribute(n, "mode") not in (None, "nearest", b"nearest")
        ):
            continue
        data = _data_inputs(n)
        if not data or not n.outputs or not quantizable(n.outputs[0]):
            continue
        if any(not quantizable(t) for t in data):
            continue  # a constant, a graph output or a non-float input: stays float
        fmts = [available(t) for t in data]
        if any(f is None for f in fmts):
            continue
        fmt = fmts[0]
        assert fmt is not None
        for t, f in zip(data, fmts, strict=True):
            assert f is not None
            src = out[t].range_of if t in out else t
            add(t, f, src, f"input of {n.name} ({n.op_type})")
        o = n.outputs[0]
        if n.op_type in SAME_GRID:
            first = out[data[0]]
            add(o, fmt, first.range_of, f"output of {n.op_type} {n.name}, input's grid",
                first.range_scale)  # fmt: skip
        else:
            add(o, fmt, o, f"output of {n.name} ({n.op_type}), so it runs as QLinear{n.op_type}")
    kernel_outputs = {la.outputs[0] for la in kernels}
    _move_up(layer_q, out, main, producer, consumers, quantizable, add, kernel_outputs)
    return out


def _scalar_add(
    n: NodeInfo,
    scalar: Scalar | None,
    consumers: Mapping[str, list[NodeInfo]],
    outputs: set[str],
    quantizable: Callable[[str], bool],
    available: Callable[[str], Format | None],
    add: Callable[[str, Format, str, str], None],
) -> bool:
    """A HardSwish's ``x + 3`` as a QLinearAdd (see the module text): ``x`` quantized on
    an asymmetric uint8 grid and the Add's only reader a Relu/Clip chain, whose output is
    quantized on its own range. True when placed."""
    found = scalar_operand(n, scalar)
    if found is None or not n.outputs:
        return False
    t = found[0]
    fmt = available(t) if quantizable(t) else None
    if fmt is None or fmt.family is not Family.INT or fmt.signed or fmt.bits != 8:
        return False
    end = _absorbed_end(n.outputs[0], consumers, outputs)
    if end == n.outputs[0] or not quantizable(end):
        return False  # no Clip for ORT to remove: QLinearAdd plus a float Clip gains nothing
    add(t, fmt, t, f"input of {n.name} ({n.op_type})")
    add(end, fmt, end, f"output of {n.name} ({n.op_type}) after its Clip, so it runs as QLinearAdd")
    return True


def rescale_operand(n: NodeInfo, scalar: Scalar | None) -> tuple[str, float] | None:
    """(data input, factor) of a Div of a tensor by a positive finite scalar constant (factor
    1 / constant) or a Mul of a tensor and one (factor the constant); None for any other node."""
    if scalar is None or n.op_type not in ("Div", "Mul") or len(n.inputs) != 2:
        return None
    if not all(n.inputs) or not n.outputs:
        return None
    sides = (1,) if n.op_type == "Div" else (1, 0)
    for k in sides:
        value = scalar(n.inputs[k])
        if (
            value is not None
            and np.isfinite(value)
            and value > 0
            and scalar(n.inputs[1 - k]) is None
        ):
            return n.inputs[1 - k], (1.0 / value if n.op_type == "Div" else value)
    return None


def _rescale(
    n: NodeInfo,
    scalar: Scalar | None,
    out: Mapping[str, TensorQuantizer],
    quantizable: Callable[[str], bool],
    add: Callable[..., None],
) -> bool:
    """A Div or Mul by a positive scalar constant of a tensor the target quantizes (the ``/ 6``
    of a paddle-style HardSwish): its output is quantized on the input's grid times the
    factor, same zero point. Every dequantized input value ``(q - z) * s`` divided by 6 is
    ``(q - z) * (s / 6)``, so the requantization returns the input's codes (an identity in
    the simulation) and the export writes the op as one DequantizeLinear of those codes
    with the scaled step (bitlens.core.export.layers.export_tensor_quantizers): ONNX Runtime
    has no QLinear Div, and ``DequantizeLinear -> Div -> QuantizeLinear`` ran float over the
    whole tensor (a third of a PP-LCNet's int8 latency). True when placed."""
    found = rescale_operand(n, scalar)
    if found is None or found[0] not in out or not quantizable(n.outputs[0]):
        return False
    src = out[found[0]]
    if src.format.family is not Family.INT:
        return False
    add(n.outputs[0], src.format, src.range_of,
        f"output of {n.name} ({n.op_type} by a constant), the input's codes rescaled",
        src.range_scale * found[1])  # fmt: skip
    return True


def _move_up(
    layer_q: Mapping[str, Format],
    out: Mapping[str, TensorQuantizer],
    main: list[NodeInfo],
    producer: Mapping[str, NodeInfo],
    consumers: Mapping[str, list[NodeInfo]],
    quantizable: Callable[[str], bool],
    add: Callable[[str, Format, str, str], None],
    kernel_outputs: set[str],
) -> None:
    """Quantize on a layer input's grid above the data-movement ops that produce it from
    model inputs.

    The values reaching the layer input are a selection of those above, so quantizing
    there on the same grid gives the same codes (an exact identity for the simulation),
    and ONNX Runtime runs the ops on 8-bit codes: a YOLOv5 Focus stem (Slice x6, Concat)
    then slices a quarter of the bytes and its Concat becomes a QLinearConcat of equal
    scales (a copy) instead of a float Concat before one QuantizeLinear. A tensor above
    is taken only when every op reading it is such an op whose output is taken too, and a
    Concat's inputs all or none; the layer input itself only when integer-kernel layers
    alone read it (the target's quantizer is read by every consumer).
    """
    for t, fmt in layer_q.items():
        users = consumers.get(t, [])
        if t in out or not quantizable(t) or any(c.outputs[0] not in kernel_outputs for c in users):
            continue
        chain, todo = {t}, [t]
        while todo:  # every tensor above t through movement ops
            p = producer.get(todo.pop())
            if p is None or p.op_type not in MOVABLE:
                continue
            for u in _data_inputs(p):
                if u not in chain and quantizable(u) and u not in out and u not in layer_q:
                    chain.add(u)
                    todo.append(u)
        changed = True
        while changed:  # drop tensors also read elsewhere, and split Concats
            changed = False
            for u in list(chain - {t}):
                users = consumers.get(u, [])
                if not users or any(
                    c.op_type not in MOVABLE
                    or c.outputs[0] not in chain
                    or not set(_data_inputs(c)) <= chain
                    for c in users
                ):
                    chain.discard(u)
                    changed = True
        # Only where the chain starts at model inputs (preprocessing: a Focus stem, an NHWC
        # image transposed), which are then quantized once. Inside the network the tensor
        # above is a layer's float output, and each tensor moved adds a
        # QuantizeLinear/DequantizeLinear pair to the file to save a copy of a few bytes.
        inner = [  # produced by a movement op from tensors of the chain
            producer[u].op_type in MOVABLE and set(_data_inputs(producer[u])) <= chain
            for u in chain
            if u in producer
        ]
        if len(chain) == 1 or not all(inner):
            continue
        order = [*(i for i in chain if i not in producer), *(o for n in main for o in n.outputs)]
        for u in order:
            if u in chain:
                add(u, fmt, t, f"on the grid of {t}, moved up through data-movement ops")


def _data_inputs(n: NodeInfo) -> list[str]:
    if n.op_type in _ALL_INPUTS:
        return list(n.inputs) if all(n.inputs) else []
    return [n.inputs[0]] if n.inputs and n.inputs[0] else []
