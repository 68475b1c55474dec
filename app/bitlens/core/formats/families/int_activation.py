"""The integer activation quantizers as ONNX subgraphs (see ``core/engine/quantizers.py``).

Static: the float form of QuantizeLinear → Clip → DequantizeLinear (FACTS: exact)::

    y = (Clip(Round(x / s) + z, qmin, qmax) - z) * s

which performs the same float32 operations as ORT's Q/DQ kernels (divide,
round half to even, add the zero point, clamp; subtract, multiply). Dynamic:
the range comes from each input at run time, then the same arithmetic.

``int-q`` (the engine's form of a per-tensor ``int`` of at most 256 codes, opset 12+):
the same values from real QuantizeLinear → Clip → DequantizeLinear nodes on uint8
codes shifted by ``qmin`` (see :func:`qdq_nodes`): two vectorized kernels and a byte
Clip instead of six float passes, whose Round alone cost ORT more than the Div, Add,
Clip, Sub and Mul together (profiled on a CRNN: the chain made the simulation 1.85x a
float run, this form 1.62x).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from onnx import NodeProto, TensorProto, helper

from bitlens.core.formats import uniform
from bitlens.core.formats.spec import Format, Granularity


def static_nodes(x: str, y: str, prefix: str) -> tuple[list[NodeProto], tuple[str, ...]]:
    n = f"{prefix}__aq"
    s, z, lo, hi = (f"{prefix}__{p}" for p in ("scale", "zp", "qmin", "qmax"))
    nodes = [
        helper.make_node("Div", [x, s], [f"{n}_div"], name=f"{n}_div"),
        helper.make_node("Round", [f"{n}_div"], [f"{n}_round"], name=f"{n}_round"),
        helper.make_node("Add", [f"{n}_round", z], [f"{n}_add"], name=f"{n}_add"),
        helper.make_node("Clip", [f"{n}_add", lo, hi], [f"{n}_clip"], name=f"{n}_clip"),
        helper.make_node("Sub", [f"{n}_clip", z], [f"{n}_sub"], name=f"{n}_sub"),
        helper.make_node("Mul", [f"{n}_sub", s], [y], name=f"{n}_mul"),
    ]
    return nodes, (s, z, lo, hi)


def qdq_nodes(x: str, y: str, prefix: str) -> tuple[list[NodeProto], tuple[str, ...]]:
    """``y`` equal, bit for bit, to :func:`static_nodes` for a per-tensor format of at most
    256 codes, from QuantizeLinear → Clip → DequantizeLinear on uint8.

    Codes are shifted by ``qmin``, so signed and unsigned formats share one graph (a plan
    moving a layer from uint8 to int4 only changes feeds): ``u = clip(round(x / s) + z -
    qmin, 0, qmax - qmin)`` is ``q - qmin`` and ``(u - (z - qmin)) * s`` is ``(q - z) * s``,
    the chain's value. ORT's CPU QuantizeLinear divides x / s, clamps to the code range
    less the zero point and rounds half to even (MLAS ``MlasQuantizeLinear``); CUDA's
    rounds x / s with ``__float2int_rn`` then clamps; rounding is monotone and the bounds
    are integers, so clamping before or after rounding gives the same codes
    (onnxruntime/core/mlas/lib/quantize.cpp, providers/cuda/tensor/quantize_linear.cu).
    The zero point and upper bound are fed as float32 (like every parameter) and cast
    here: two scalar Casts. One difference: a NaN input gives a code (QuantizeLinear
    saturates it) where the chain gives NaN; the engine's float reference has no NaN.
    ORT would fuse these nodes with their neighbours into integer kernels (QLinearAdd...):
    engine sessions turn that off (``session.disable_quant_qdq``, session.py)."""
    n = f"{prefix}__aq"
    s, z, top = (f"{prefix}__{p}" for p in ("scale", "zq", "top"))
    u8 = TensorProto.UINT8
    nodes = [
        helper.make_node("Cast", [z], [f"{n}_zq"], name=f"{n}_zq", to=u8),
        helper.make_node("Cast", [top], [f"{n}_top"], name=f"{n}_top", to=u8),
        helper.make_node("QuantizeLinear", [x, s, f"{n}_zq"], [f"{n}_q"], name=f"{n}_q"),
        helper.make_node("Clip", [f"{n}_q", "", f"{n}_top"], [f"{n}_codes"], name=f"{n}_clip"),
        helper.make_node("DequantizeLinear", [f"{n}_codes", s, f"{n}_zq"], [y], name=f"{n}_dq"),
    ]
    return nodes, (s, z, top)


def qdq_fits(fmt: Format) -> bool:
    """Whether :func:`qdq_nodes` can simulate ``fmt``: per tensor, at most 256 codes."""
    return fmt.granularity is Granularity.TENSOR and fmt.qmax - fmt.qmin <= 255


def dynamic_nodes(x: str, y: str, prefix: str) -> tuple[list[NodeProto], tuple[str, ...]]:
    """Range from this input at run time, then the same Q/DQ arithmetic as ``int``.

    scale = (max(hi, 0) - min(lo, 0)) / (qmax - qmin), or 2·amax / (qmax - qmin) when
    symmetric (``sym`` = 1), guarded against 0 like the static parameters;
    zero point = clip(round(qmin - lo / scale)), or the fixed ``zfix`` when symmetric.
    """
    n = f"{prefix}__aq"
    qmin, qmax, qrange, sym, zfix, tiny, one, zero = (
        f"{prefix}__{p}" for p in ("qmin", "qmax", "qrange", "sym", "zfix", "tiny", "one", "zero")
    )
    mk = helper.make_node
    nodes = [
        mk("ReduceMin", [x], [f"{n}_rmin"], name=f"{n}_rmin", keepdims=0),
        mk("ReduceMax", [x], [f"{n}_rmax"], name=f"{n}_rmax", keepdims=0),
        mk("Min", [f"{n}_rmin", zero], [f"{n}_lo0"], name=f"{n}_lo0"),
        mk("Max", [f"{n}_rmax", zero], [f"{n}_hi0"], name=f"{n}_hi0"),
        mk("Neg", [f"{n}_lo0"], [f"{n}_nlo"], name=f"{n}_nlo"),
        mk("Max", [f"{n}_nlo", f"{n}_hi0"], [f"{n}_amax"], name=f"{n}_amax"),
        mk("Neg", [f"{n}_amax"], [f"{n}_namax"], name=f"{n}_namax"),
        mk("Cast", [sym], [f"{n}_symb"], name=f"{n}_symb", to=TensorProto.BOOL),
        mk("Where", [f"{n}_symb", f"{n}_namax", f"{n}_lo0"], [f"{n}_lo"], name=f"{n}_lo"),
        mk("Where", [f"{n}_symb", f"{n}_amax", f"{n}_hi0"], [f"{n}_hi"], name=f"{n}_hi"),
        mk("Sub", [f"{n}_hi", f"{n}_lo"], [f"{n}_span"], name=f"{n}_span"),
        mk("Div", [f"{n}_span", qrange], [f"{n}_s0"], name=f"{n}_s0"),
        mk("Max", [f"{n}_s0", tiny], [f"{n}_s1"], name=f"{n}_s1"),
        mk("Equal", [f"{n}_span", zero], [f"{n}_empty"], name=f"{n}_empty"),
        mk("Where", [f"{n}_empty", one, f"{n}_s1"], [f"{n}_s"], name=f"{n}_s"),
        mk("Div", [f"{n}_lo", f"{n}_s"], [f"{n}_los"], name=f"{n}_los"),
        mk("Sub", [qmin, f"{n}_los"], [f"{n}_z0"], name=f"{n}_z0"),
        mk("Round", [f"{n}_z0"], [f"{n}_z1"], name=f"{n}_z1"),
        mk("Clip", [f"{n}_z1", qmin, qmax], [f"{n}_z2"], name=f"{n}_z2"),
        mk("Where", [f"{n}_symb", zfix, f"{n}_z2"], [f"{n}_z"], name=f"{n}_z"),
        mk("Div", [x, f"{n}_s"], [f"{n}_div"], name=f"{n}_div"),
        mk("Round", [f"{n}_div"], [f"{n}_round"], name=f"{n}_round"),
        mk("Add", [f"{n}_round", f"{n}_z"], [f"{n}_add"], name=f"{n}_add"),
        mk("Clip", [f"{n}_add", qmin, qmax], [f"{n}_clip"], name=f"{n}_clip"),
        mk("Sub", [f"{n}_clip", f"{n}_z"], [f"{n}_sub"], name=f"{n}_sub"),
        mk("Mul", [f"{n}_sub", f"{n}_s"], [y], name=f"{n}_mul"),
    ]
    return nodes, (qmin, qmax, qrange, sym, zfix, tiny, one, zero)


def feeds(kind: str, prefix: str, fmt: Format, lo: float, hi: float) -> dict[str, np.ndarray]:
    """Parameter values for a calibrated range ``[lo, hi]`` (static) or the fixed ones (dynamic)."""
    f32 = np.float32
    if kind == "int":
        scale, zp = uniform.params_from_range(np.asarray(lo), np.asarray(hi), fmt)
        return {
            f"{prefix}__scale": np.asarray(scale, f32),
            f"{prefix}__zp": np.asarray(zp, f32),
            f"{prefix}__qmin": np.asarray(fmt.qmin, f32),
            f"{prefix}__qmax": np.asarray(fmt.qmax, f32),
        }
    if kind == "int-q":
        if not qdq_fits(fmt) or np.ndim(lo) or np.ndim(hi):
            raise ValueError(f"{fmt.name} does not fit the int-q quantizer")
        scale, zp = uniform.params_from_range(np.asarray(lo), np.asarray(hi), fmt)
        return {
            f"{prefix}__scale": np.asarray(scale, f32),
            f"{prefix}__zq": np.asarray(int(zp) - fmt.qmin, f32),
            f"{prefix}__top": np.asarray(fmt.qmax - fmt.qmin, f32),
        }
    if kind == "int-dyn":
        zfix = 0 if (fmt.signed or not fmt.symmetric) else (fmt.qmax + fmt.qmin + 1) // 2
        values = {
            "qmin": fmt.qmin, "qmax": fmt.qmax, "qrange": fmt.qmax - fmt.qmin,
            "sym": 1.0 if fmt.symmetric else 0.0, "zfix": zfix,
            "tiny": np.finfo(np.float32).tiny, "one": 1.0, "zero": 0.0,
        }  # fmt: skip
        return {f"{prefix}__{k}": np.asarray(v, f32) for k, v in values.items()}
    raise ValueError(f"not an integer quantizer kind: {kind!r}")


def reference(kind: str, x: np.ndarray, feeds: Mapping[str, np.ndarray], prefix: str) -> np.ndarray:
    """The same quantizer in numpy (tests compare the ONNX subgraph against it)."""
    x = x.astype(np.float32)
    if kind == "int-dyn":
        p = {k.removeprefix(f"{prefix}__"): v for k, v in feeds.items()}
        lo, hi = min(np.float32(x.min()), np.float32(0)), max(np.float32(x.max()), np.float32(0))
        if p["sym"]:
            amax = max(-lo, hi)
            lo, hi = -amax, amax
        span = np.float32(hi - lo)
        s = np.float32(1) if span == 0 else max(np.float32(span / p["qrange"]), p["tiny"])
        if p["sym"]:
            z = p["zfix"]
        else:
            z = np.clip(np.rint(p["qmin"] - np.float32(lo / s)), p["qmin"], p["qmax"])
        q = np.clip(np.rint(x / s) + z, p["qmin"], p["qmax"])
        return ((q - z) * s).astype(np.float32)
    if kind == "int-q":
        s, z = feeds[f"{prefix}__scale"], feeds[f"{prefix}__zq"]
        u = np.clip(np.rint(x / s) + z, 0, feeds[f"{prefix}__top"])
        return ((u - z) * s).astype(np.float32)
    if kind == "int":
        s, z = feeds[f"{prefix}__scale"], feeds[f"{prefix}__zp"]
        q = np.clip(np.rint(x / s) + z, feeds[f"{prefix}__qmin"], feeds[f"{prefix}__qmax"])
        return ((q - z) * s).astype(np.float32)
    raise ValueError(f"not an integer quantizer kind: {kind!r}")
