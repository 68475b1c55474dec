"""Warnings before export for 4-bit integer-kernel layers (int4/uint4 weights per tensor or
channel next to 8-bit activations run as ONNX Runtime's 8-bit kernels on target 'ort-cpu').
Before, only 8-bit weights were checked: a 4-bit layer that would run in float said nothing,
and target 'none' told 4-bit Convs (folded to float there) to mind their requantization."""

from __future__ import annotations

from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.plan_checks import deployment_warnings
from tests.core.engine_models import small_cnn

INFO = from_proto(small_cnn()).info  # conv1, conv2 (Conv), fc (Gemm)


def _warnings(weight: str, act: str | None, target: str = "ort-cpu", **kw: object) -> str:
    choice = LayerChoice.of(weight, act, **kw)  # type: ignore[arg-type]
    plan = Plan(INFO, {la.name: choice for la in INFO.layers}).with_target(target)
    return "\n".join(deployment_warnings(plan))


def test_4bit_kernel_layers_that_run_in_float_are_warned_about() -> None:
    assert _warnings("int4 sym ch", "uint8 asym") == ""  # W4A8: integer kernels
    text = _warnings("uint4 asym", "fp16")
    # one reason, one line (tests/core/test_targets.py)
    assert "layers 'conv1', 'conv2' and 'fc': uint4 weights will run in float: activation fp16" in text
    text = _warnings("int4 sym ch", "uint8 asym", dynamic=True)
    assert "'fc': int4 weights will run in float: dynamic activations" in text
    # target 'none' writes 4-bit weights folded: said, and not the requantization note
    text = _warnings("int4 sym ch", "uint8 asym", "none")
    assert "'fc': int4 weights will run in float: target 'none' writes 4-bit" in text
    assert "not requantized" not in text
    # weight-only 4-bit (W4A16's blocks, or no activation) asks for a small file, not a kernel
    assert _warnings("int4 sym blk32", "fp16") == ""
    assert _warnings("int4 sym ch", None) == ""
    # 8-bit weights per block: the reason is the blocks, not the activation
    text = _warnings("int8 sym blk32", "uint8 asym")
    assert "'fc': int8 weights will run in float: per-block weights" in text
