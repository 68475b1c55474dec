"""Which layers and formats a recovery method applies to, checked when a plan is built."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from bitlens.core.errors import PlanError
from bitlens.core.formats import Family, Format
from bitlens.core.model.types import Layer
from bitlens.core.recovery import Recovery

if TYPE_CHECKING:
    from bitlens.core.plan import Plan

OPS = frozenset({"Conv", "Gemm", "MatMul"})


def check_recovery(layer: Layer, weight: Format | None, method: Recovery) -> None:
    """Raise PlanError naming the problem when ``method`` cannot apply to the layer."""
    where = f"layer {layer.name!r}: {method.value}"
    if weight is None:
        raise PlanError(f"{where} needs a weight format (it changes how weights are rounded)")
    if layer.op_type not in OPS or layer.graph_path or len(layer.weights) != 1:
        raise PlanError(f"{where} works on main-graph Conv, Gemm and MatMul layers only")
    if layer.op_type != "Conv" and (
        len(layer.weights[0].shape) != 2 or layer.inputs[1:2] != (layer.weights[0].name,)
    ):
        raise PlanError(f"{where} needs a 2-D constant weight as the right-hand input")
    if not layer.activations:
        raise PlanError(f"{where} needs a float activation input to calibrate on")
    if method in (Recovery.GPTQ, Recovery.CLIP) and weight.family is not Family.INT:
        raise PlanError(f"{where} needs an integer weight format, not {weight.name}")
    scaled = (Recovery.AWQ, Recovery.SMOOTH)
    if method in scaled and (weight.is_float and not weight.has_scale):
        raise PlanError(f"{where} needs a scaled weight format, not {weight.name}")
    if method in scaled and layer.weights[0].dtype != "float32":
        raise PlanError(f"{where} needs a float32 weight, not {layer.weights[0].dtype}")
    if method is Recovery.SMOOTH and layer.activations != layer.inputs[:1]:
        raise PlanError(f"{where} needs the layer's only float input to be its data input")
    if method is Recovery.BIAS and not layer.biases and layer.weights[0].dtype != "float32":
        raise PlanError(
            f"{where} creates a float32 bias for a layer without one; the weight is "
            f"{layer.weights[0].dtype}"
        )


def kept_recovery(layer: Layer, weight: Format | None, method: Recovery | None) -> Recovery | None:
    """``method`` if it still applies after the layer's weights change to ``weight``, else
    None: a format change from the table, the sandbox or a selection keeps the layer's
    recovery where it can and drops it where the new format rules it out (fp16, float),
    instead of refusing the whole edit."""
    if method is None:
        return None
    try:
        check_recovery(layer, weight, method)
    except PlanError:
        return None
    return method


def with_recovery(plan: Plan, method: Recovery) -> tuple[Plan, list[str]]:
    """``plan`` with ``method`` on every quantized layer it applies to, and one
    ``layer: why`` line for each quantized layer it does not."""
    changes, skipped = {}, []
    for name, choice in plan.choices.items():
        if choice.weight is None:
            continue
        try:
            check_recovery(plan.info.layer(name), choice.weight, method)
        except PlanError as exc:
            skipped.append(str(exc))
            continue
        changes[name] = dataclasses.replace(choice, recovery=method)
    return plan.with_choices(changes), skipped
