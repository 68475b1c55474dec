"""Activation quantizers in the exported graph, with their calibrated parameters baked in.

* int8, uint8, int16, uint16 with a calibrated range: a standard
  QuantizeLinear -> DequantizeLinear pair. ONNX Runtime's CPU provider
  fuses 8-bit pairs around Conv, MatMul and Gemm into integer kernels
  (QLinearConv, QLinearMatMul, QGemm, MatMulIntegerToFloat); 16-bit
  pairs run as written (no 16-bit integer kernel).
* every other activation format (integers of 2 to 7 bits, fp16, bf16,
  fp8) and every dynamic one: the engine's own simulation subgraph
  (:func:`bitlens.core.engine.quantizers.build`) with its parameters as
  initializers. No integer or low-precision kernel exists for these in
  ONNX Runtime; they compute exactly what the inspector showed, in float.

QuantizeLinear divides by the scale, rounds half to even, adds the zero
point and saturates; DequantizeLinear subtracts the zero point and
multiplies: the same float32 operations as the engine's ``int`` quantizer,
so the pair reproduces it bit for bit when run as written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import numpy_helper

from bitlens.core.engine import quantizers
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.formats import Family, Format, Granularity, uniform

QDQ_WIDTHS = (8, 16)


@dataclass(frozen=True)
class QuantizerRecord:
    """One activation quantizer the export added in front of a layer."""

    layer: str
    activation: str  # the float tensor that is quantized
    output: str  # the tensor the layer now reads
    format: str
    kind: str  # "qdq", or an engine quantizer kind ("int", "int-dyn", "fp16", ...)
    codes: str | None  # tensor of the integer codes (QuantizeLinear output, or Clip in float)
    scale: float | None  # the static quantization step (None: dynamic, or a plain cast)
    zero_point: float | None
    description: str
    min_opset: int
    node: str = ""  # the node producing the probed tensor (names survive ORT's rewrites)

    @property
    def simulated(self) -> bool:
        """True when no integer kernel can run it: it computes in float, as simulated."""
        return self.kind != "qdq"


def uses_qdq(fmt: Format, dynamic: bool) -> bool:
    """Real QuantizeLinear/DequantizeLinear: static per-tensor 8/16-bit integers. A per-channel
    activation is simulated instead: no ONNX Runtime kernel takes a per-channel input scale."""
    return (
        fmt.family is Family.INT
        and fmt.bits in QDQ_WIDTHS
        and not dynamic
        and fmt.granularity is Granularity.TENSOR
    )


def encode_activation(
    b: GraphBuilder,
    layer: str,
    act: str,
    fmt: Format,
    *,
    dynamic: bool,
    value_range: tuple[float, float],
) -> QuantizerRecord:
    """Add the quantizer of ``act`` for ``layer``; the layer must then read ``record.output``."""
    y = b.name(f"{act}_q")
    lo, hi = value_range
    if uses_qdq(fmt, dynamic):
        scale, zp = uniform.params_from_range(np.asarray(lo), np.asarray(hi), fmt)
        s = b.const("scale", np.asarray(scale, np.float32))
        z = b.const("zero_point", np.asarray(zp))
        codes = b.node("QuantizeLinear", [act, s, z])
        q_node = b.nodes[-1].name
        b.node("DequantizeLinear", [codes, s, z], y)
        kind_text = f"{np.asarray(zp).dtype.name} QuantizeLinear/DequantizeLinear"
        return QuantizerRecord(
            layer, act, y, fmt.name, "qdq", codes, float(scale), float(zp),
            f"{kind_text}, scale {float(scale):.6g}, zero point {int(zp)}",
            21 if fmt.bits == 16 else 10, q_node,
        )  # fmt: skip
    kind = quantizers.kind_of(fmt, dynamic)
    assert kind is not None
    prefix = b.name("a")
    nodes, io = quantizers.build(kind, act, y, prefix)
    feeds = quantizers.param_feeds(kind, prefix, fmt, lo, hi)
    for p in io.params:
        b.initializers.append(numpy_helper.from_array(feeds[p], p))
        b.taken.add(p)
    for node in nodes:
        b.taken.update([node.name, *node.output])
    b.extend(nodes)
    codes = f"{prefix}__aq_clip" if kind in ("int", "int-dyn") else None
    scale = zero = None
    # per channel by the format, not by the count: a per-channel format on a 1-channel tensor
    # (basic-pitch's mono convs) has one scale of shape [1, 1, 1, 1], not a scalar
    if kind == "int" and fmt.granularity is not Granularity.TENSOR:
        text = (
            f"{fmt.name} simulated in float (Div, Round, Add, Clip, Sub, Mul), "
            f"{feeds[f'{prefix}__scale'].size} channel scales"
        )
    elif kind == "int":
        scale = float(feeds[f"{prefix}__scale"])
        zero = float(feeds[f"{prefix}__zp"])
        text = f"{fmt.name} simulated in float (Div, Round, Add, Clip, Sub, Mul), scale {scale:.6g}"
    elif kind == "int-dyn":
        text = f"dynamic {fmt.name}: range of each input at run time, simulated in float"
    elif kind.startswith("fp8") and fmt.granularity is not Granularity.TENSOR:
        n = feeds[f"{prefix}__scale"].size
        text = f"{kind} simulated (Div, Cast to {kind} and back, Mul), {n} channel scales"
    elif kind.startswith("fp8"):
        scale = float(feeds[f"{prefix}__scale"])
        text = f"{kind} simulated (Div, Cast to {kind} and back, Mul), scale {scale:.6g}"
    else:
        text = f"{kind} simulated (Cast to {kind} and back to float32)"
    text += "; ONNX Runtime has no kernel computing in this format"
    probed = codes or y
    node = next(n.name for n in nodes if probed in n.output)
    return QuantizerRecord(
        layer, act, y, fmt.name, kind, codes, scale, zero, text,
        quantizers.KIND_MIN_OPSET[kind], node,
    )  # fmt: skip
