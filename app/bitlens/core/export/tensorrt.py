"""TensorRT's documented rules for Q/DQ (explicitly quantized) ONNX models, checked on a file.

NVIDIA's TensorRT developer guide, "Working with Quantized Types" / "Explicit
Quantization" (https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/
quantized-types-explicit-quantization.html, earlier "Working with QAT Networks"):

* quantization is symmetric: every zero point is 0 (the ONNX parser asserts
  "TRT only supports symmetric quantization - zeroPt must be all zeros"),
  and INT8 is signed: int8 zero points, never uint8;
* INT8 activations use [-128, 127], INT8 weights [-127, 127];
* scales are positive build-time constants (initializers);
* activations are quantized per tensor; weights per tensor or per output
  channel: axis 0 of a Conv's weight (K), axis 1 of a ConvTranspose's, the
  output axis of a Gemm/MatMul's (0 with transB=1, else the last);
* a quantized weight is a constant: DequantizeLinear of an initializer;
* placement: quantize all inputs of weighted operations (Convolution,
  Transposed Convolution, GEMM), so a layer with quantized weights also has
  a quantized data input; TensorRT itself fuses the output requantization
  into the next layer's input quantizer, so weighted layers' outputs need
  none. Quantizing the residual input of an Add lets TensorRT fuse the Add
  into the convolution: a recommendation, reported separately.

Nothing here runs TensorRT: the rules are read from the graph, so a file that
breaks them is caught on any machine.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

WEIGHTED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(onnx.helper.get_attribute_value(a))
    return default


def output_axis(node: onnx.NodeProto, rank: int) -> int:
    """The output-channel axis of ``node``'s weight (its input 1)."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        return 0 if _attr(node, "transB", 0) else 1
    return rank - 1  # MatMul: [..., K, N]


def structural_problems(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(problems, recommendations) of ``model``'s main graph against TensorRT's Q/DQ rules."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    problems: list[str] = []
    advice: list[str] = []
    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for n in qdq:
        what = f"{n.op_type} {n.name or n.output[0]!r}"
        scale = inits.get(n.input[1]) if len(n.input) > 1 else None
        if scale is None:
            problems.append(f"{what}: its scale is not a constant initializer")
        else:
            s = numpy_helper.to_array(scale).astype(np.float64)
            if not np.all(np.isfinite(s)) or np.any(s <= 0):
                problems.append(f"{what}: scales must be positive and finite")
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zp is None:
            if not (len(n.input) > 2 and n.input[2]):
                problems.append(f"{what}: no zero point means uint8; TensorRT needs int8")
            else:
                problems.append(f"{what}: its zero point is not a constant initializer")
        else:
            z = numpy_helper.to_array(zp)
            if z.dtype != np.int8:
                problems.append(f"{what}: zero point of type {z.dtype}; TensorRT needs int8")
            elif np.any(z != 0):
                problems.append(f"{what}: zero point must be 0 (TensorRT is symmetric)")
    for n in g.node:
        if n.op_type != "DequantizeLinear":
            continue
        x = n.input[0]
        if x in inits:  # a quantized weight
            _check_weight(n, numpy_helper.to_array(inits[x]), inits, consumers, problems)
        elif x not in producer or producer[x].op_type != "QuantizeLinear":
            problems.append(
                f"DequantizeLinear {n.name or n.output[0]!r}: dequantizes a computed tensor; "
                "TensorRT needs a constant weight or a QuantizeLinear's output"
            )
    for n in g.node:
        if n.op_type != "QuantizeLinear" or n.input[0] in inits:
            continue
        scale = inits.get(n.input[1])
        if scale is not None and numpy_helper.to_array(scale).size != 1:
            problems.append(
                f"QuantizeLinear {n.name or n.output[0]!r}: activations are quantized per "
                "tensor in TensorRT, not per channel"
            )
    for n in g.node:
        if n.op_type not in WEIGHTED or len(n.input) < 2:
            continue
        w = producer.get(n.input[1])
        if w is None or w.op_type != "DequantizeLinear":
            continue  # a float layer: nothing to check
        d = producer.get(n.input[0])
        if d is None or d.op_type != "DequantizeLinear":
            problems.append(
                f"{n.op_type} {n.name!r}: quantized weights but a float data input; TensorRT "
                "quantizes all inputs of weighted operations"
            )
    for n in g.node:
        if n.op_type != "Add" or len(n.input) != 2:
            continue
        sources = [producer.get(t) for t in n.input]
        if any(s is not None and s.op_type in WEIGHTED for s in sources) and not all(
            s is not None and s.op_type == "DequantizeLinear" for s in sources
        ):
            weighted = [s for s in sources if s is not None and s.op_type in WEIGHTED]
            other = [t for t, s in zip(n.input, sources, strict=True) if s not in weighted]
            if other and all(t not in inits for t in other):
                advice.append(
                    f"Add {n.name!r}: quantizing its residual input lets TensorRT fuse it into "
                    f"{weighted[0].op_type} {weighted[0].name!r}"
                )
    return problems, advice


def _check_weight(
    dq: onnx.NodeProto,
    codes: np.ndarray,
    inits: dict[str, onnx.TensorProto],
    consumers: dict[str, list[onnx.NodeProto]],
    problems: list[str],
) -> None:
    what = f"weight {dq.input[0]!r}"
    if codes.dtype == np.int8 and codes.size and int(codes.min()) < -127:
        problems.append(f"{what}: int8 weights use -127..127 in TensorRT, found -128")
    scale = inits.get(dq.input[1])
    if scale is None:
        return
    s = numpy_helper.to_array(scale)
    users = [u for u in consumers.get(dq.output[0], []) if u.op_type in WEIGHTED]
    if s.size == 1 or not users:
        return
    axis = _attr(dq, "axis", 1)
    axis = axis + codes.ndim if axis < 0 else axis
    for u in users:
        if u.input[1] != dq.output[0]:
            continue
        want = output_axis(u, codes.ndim)
        if axis != want or s.size != codes.shape[want]:
            problems.append(
                f"{what}: per-channel scales on axis {axis}; TensorRT needs the output "
                f"channels of {u.op_type} {u.name!r} (axis {want}, {codes.shape[want]} scales)"
            )
