"""Activation quantizers as ONNX subgraphs whose parameters are graph inputs.

Each quantizer is built once per session and fed its parameters at run
time, so changing a layer's activation range or bit width costs no model
rewrite. The integer quantizer is the float form of QuantizeLinear →
Clip → DequantizeLinear (FACTS: exact)::

    y = (Clip(Round(x / s) + z, qmin, qmax) - z) * s

which performs the same float32 operations as ORT's Q/DQ kernels (divide,
round half to even, add the zero point, clamp; subtract, multiply).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, TensorProto, helper

from bitlens.core.errors import EngineError
from bitlens.core.formats import Family, Format, floats, uniform

# quantizer kind -> minimum opset of the ops it uses
KIND_MIN_OPSET = {"int": 11, "fp16": 1, "bf16": 13, "fp8e4m3fn": 19, "fp8e5m2": 19}
_CAST_TO = {
    "fp16": TensorProto.FLOAT16,
    "bf16": TensorProto.BFLOAT16,
    "fp8e4m3fn": TensorProto.FLOAT8E4M3FN,
    "fp8e5m2": TensorProto.FLOAT8E5M2,
}


def kind_of(fmt: Format | None) -> str | None:
    """The quantizer structure a format needs (None: no quantizer)."""
    if fmt is None:
        return None
    if fmt.family is Family.INT:
        return "int"
    if fmt.is_float and fmt.float_kind in _CAST_TO:
        return fmt.float_kind
    raise EngineError(f"activation format {fmt.name} cannot be simulated")


@dataclass(frozen=True)
class QuantizerIO:
    """Names of a quantizer's parameter inputs (empty for parameter-free casts)."""

    params: tuple[str, ...]


def build(kind: str, x: str, y: str, prefix: str) -> tuple[list[NodeProto], QuantizerIO]:
    """Nodes computing ``y = quantize(x)`` for ``kind``; parameters named ``<prefix>__*``."""
    n = f"{prefix}__aq"
    if kind == "int":
        s, z, lo, hi = (f"{prefix}__{p}" for p in ("scale", "zp", "qmin", "qmax"))
        nodes = [
            helper.make_node("Div", [x, s], [f"{n}_div"], name=f"{n}_div"),
            helper.make_node("Round", [f"{n}_div"], [f"{n}_round"], name=f"{n}_round"),
            helper.make_node("Add", [f"{n}_round", z], [f"{n}_add"], name=f"{n}_add"),
            helper.make_node("Clip", [f"{n}_add", lo, hi], [f"{n}_clip"], name=f"{n}_clip"),
            helper.make_node("Sub", [f"{n}_clip", z], [f"{n}_sub"], name=f"{n}_sub"),
            helper.make_node("Mul", [f"{n}_sub", s], [y], name=f"{n}_mul"),
        ]
        return nodes, QuantizerIO((s, z, lo, hi))
    if kind in ("fp16", "bf16"):
        nodes = [
            helper.make_node("Cast", [x], [f"{n}_cast"], name=f"{n}_cast", to=_CAST_TO[kind]),
            helper.make_node("Cast", [f"{n}_cast"], [y], name=f"{n}_back", to=TensorProto.FLOAT),
        ]
        return nodes, QuantizerIO(())
    if kind in ("fp8e4m3fn", "fp8e5m2"):
        s = f"{prefix}__scale"
        nodes = [
            helper.make_node("Div", [x, s], [f"{n}_div"], name=f"{n}_div"),
            helper.make_node(
                "Cast", [f"{n}_div"], [f"{n}_cast"], name=f"{n}_cast", to=_CAST_TO[kind], saturate=1
            ),
            helper.make_node(
                "Cast", [f"{n}_cast"], [f"{n}_back"], name=f"{n}_back", to=TensorProto.FLOAT
            ),
            helper.make_node("Mul", [f"{n}_back", s], [y], name=f"{n}_mul"),
        ]
        return nodes, QuantizerIO((s,))
    raise EngineError(f"unknown activation quantizer kind {kind!r}")


def param_feeds(kind: str, prefix: str, fmt: Format, lo: float, hi: float) -> dict[str, np.ndarray]:
    """Parameter values for a calibrated range ``[lo, hi]``."""
    f32 = np.float32
    if kind == "int":
        scale, zp = uniform.params_from_range(np.asarray(lo), np.asarray(hi), fmt)
        return {
            f"{prefix}__scale": np.asarray(scale, f32),
            f"{prefix}__zp": np.asarray(zp, f32),
            f"{prefix}__qmin": np.asarray(fmt.qmin, f32),
            f"{prefix}__qmax": np.asarray(fmt.qmax, f32),
        }
    if kind in ("fp8e4m3fn", "fp8e5m2"):
        return {
            f"{prefix}__scale": np.asarray(
                floats.fp8_scale(np.asarray(lo), np.asarray(hi), kind), f32
            )
        }
    return {}


def numpy_reference(
    kind: str, x: np.ndarray, feeds: dict[str, np.ndarray], prefix: str
) -> np.ndarray:
    """The same quantizer in numpy (tests compare the ONNX subgraph against it)."""
    x = x.astype(np.float32)
    if kind == "int":
        s, z = feeds[f"{prefix}__scale"], feeds[f"{prefix}__zp"]
        q = np.clip(np.rint(x / s) + z, feeds[f"{prefix}__qmin"], feeds[f"{prefix}__qmax"])
        return ((q - z) * s).astype(np.float32)
    if kind in ("fp16", "bf16"):
        return floats.cast(x, kind).astype(np.float32)
    s = feeds[f"{prefix}__scale"]
    return floats.fp8_dequantize(floats.fp8_quantize(x, s, kind), s)
