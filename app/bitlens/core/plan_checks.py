"""What a plan asks of its deployment target that the target will not do as asked, said
before the export: TensorRT's Q/DQ rules (check_plan) and the layers ONNX Runtime's CPU
provider will run in float although the plan asks for integer kernels (8-bit integers, or
2- to 7-bit weights next to 8-bit activations: deployment_warnings). The placement rules they
rest on are in core/targets.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bitlens.core import lstm_kernel
from bitlens.core.formats import Family, Format, Granularity
from bitlens.core.targets import (
    KERNEL_OPS,
    KERNEL_WEIGHT_BITS,
    NONE,
    TENSORRT,
    kernel_format,
    kernel_weight,
    kernel_weight_on_target,
    placement,
    slower_as_integer,
    unfused_pattern,
)

if TYPE_CHECKING:
    from bitlens.core.model.types import Layer
    from bitlens.core.plan import Plan


def check_plan(plan: Plan) -> list[str]:
    """Problems of ``choices`` for ``target`` (empty: fine). TensorRT's Q/DQ rules: int8
    activations symmetric with zero point 0 and per tensor; weights int8 symmetric in
    -127..127, per tensor or per output channel (axis 0 for Conv, the output axis for
    Gemm/MatMul). The exported file is checked against the same rules by
    :func:`bitlens.core.export.tensorrt.structural_problems`."""
    if plan.target != TENSORRT:
        return []
    problems = []
    for name, c in plan.choices.items():
        w, a, dyn = c.weight, c.activation, c.dynamic
        layer = plan.info.layer(name)
        if a is not None and a.family is Family.INT:
            if a.bits != 8 or not a.signed or not a.symmetric or dyn:
                problems.append(
                    f"{name}: TensorRT needs static symmetric int8 activations, not {a.name}"
                )
            elif a.granularity is not Granularity.TENSOR:
                problems.append(f"{name}: TensorRT needs per-tensor activations, not {a.name}")
        if w is not None and w.family is Family.INT and layer.op_type in KERNEL_OPS:
            if w.bits != 8 or not w.signed or not w.symmetric:
                problems.append(f"{name}: TensorRT needs symmetric int8 weights, not {w.name}")
            elif w.granularity is Granularity.BLOCK:
                problems.append(f"{name}: TensorRT needs per-tensor or per-channel weights")
            elif w.granularity is Granularity.CHANNEL and w.axis not in (
                None,
                layer.weights[0].channel_axis,
            ):
                problems.append(f"{name}: TensorRT needs weights per output channel")
            if w.bits == 8 and w.signed and w.symmetric and not w.narrow:
                # TensorRT's int8 weights are -127..127 (activations -128..127)
                problems.append(
                    f"{name}: TensorRT needs int8 weights in -127..127 (int8 sym narrow), "
                    f"not {w.name}"
                )
    return problems


def deployment_warnings(plan: Plan) -> list[str]:
    """Before export: layers whose plan asks for an integer kernel (8-bit integer weights, or
    2- to 7-bit ones per tensor or channel next to a quantized activation:
    :data:`~bitlens.core.targets.KERNEL_WEIGHT_BITS`) that ONNX Runtime's CPU provider will
    not run as one, and the slow dynamic-conv path. Layers that run in float for the same
    reason are said in one line (mk8dx-table-reader's bidirectional LSTM has 16 MatMuls in
    Loop bodies: 16 lines of 130 characters, twice, said one thing)."""
    out: list[str] = []
    in_float: dict[tuple[str, str], list[str]] = {}  # (code type, why) -> layers
    placed = placement(plan)
    for name, c in plan.choices.items():
        layer = plan.info.layer(name)
        w, a = c.weight, c.activation
        if layer.op_type == "Conv" and c.dynamic and a is not None:
            out.append(
                f"layer {name!r}: dynamic activations on a Conv have no fast path in ONNX "
                "Runtime (its ConvInteger runs 3-6x slower than float on CPU); the export "
                "simulates them in float: prefer calibrated (static) activations for QLinearConv"
            )
        elif w is not None and _asks_kernel(w, a) and layer.op_type in KERNEL_OPS and (
            why := _why_float(layer, w, a, c.dynamic, plan.target)
        ):
            in_float.setdefault((_code_type(w), why), []).append(name)
        elif (
            plan.target == NONE
            and layer.op_type == "Conv"
            and w is not None
            and w.bits == 8
            and kernel_format(layer, w, a, c.dynamic)
            and layer.outputs[0] not in placed
        ):
            out.append(
                f"layer {name!r}: with target 'none' its output is not requantized, so ONNX "
                "Runtime runs it as a float Conv unless the next quantizer follows directly"
            )
    for (code, why), names in in_float.items():
        out.append(f"{_layers(names)}: {code} weights will run in float: {why}")
    return out + lstm_kernel.float_note(plan)


def _layers(names: list[str]) -> str:
    """``layer 'a'``, ``layers 'a', 'b' and 'c'`` (up to three), else ``16 layers ('a', 'b'
    and 14 more)``."""
    if len(names) == 1:
        return f"layer {names[0]!r}"
    if len(names) <= 3:
        return f"layers {', '.join(map(repr, names[:-1]))} and {names[-1]!r}"
    return f"{len(names)} layers ({names[0]!r}, {names[1]!r} and {len(names) - 2} more)"


def _asks_kernel(w: Format, a: Format | None) -> bool:
    """8-bit integer weights; 2- to 7-bit ones per tensor or channel next to a quantized
    activation (weight-only narrow codes, and blocked ones as in W4A16, ask for small files,
    not a kernel)."""
    if w.family is Family.INT and w.bits in KERNEL_WEIGHT_BITS:
        return w.bits == 8 or (a is not None and w.granularity is not Granularity.BLOCK)
    return a is not None and kernel_weight(w)  # ternary, binary


def _why_float(layer: Layer, w: Format, a: Format | None, dynamic: bool, target: str) -> str:
    """Why the layer will not be an integer kernel ("" when it will be one)."""
    if kernel_format(layer, w, a, dynamic):
        if not kernel_weight_on_target(w, target):
            return (
                f"target {target!r} writes {w.bits}-bit weights folded to float (they "
                "reach ONNX Runtime's 8-bit integer kernels through a Cast it folds at load "
                "only with target 'ort-cpu')"
            )
        return ""
    if layer.graph_path:
        return "inside a subgraph"
    if slow := slower_as_integer(layer):
        return f"stays float because {slow}"
    if pattern := unfused_pattern(layer, w):
        return pattern
    if w.granularity is Granularity.BLOCK or len(layer.weights) != 1:
        return "per-block weights (integer kernels take per-tensor or per-channel weights)"
    if a is None:
        return "no activation format"
    if dynamic:
        return "dynamic activations (integer kernels need calibrated ones)"
    return f"activation {a.name} (integer kernels need per-tensor 8-bit integers)"


def _code_type(w: Format) -> str:
    if w.family in (Family.TERNARY, Family.BINARY):
        return w.family.value
    return f"{'' if w.signed else 'u'}int{w.bits}"
