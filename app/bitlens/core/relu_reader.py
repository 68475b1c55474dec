"""Gemm and MatMul layers ONNX Runtime runs in float unless their output is requantized.

Measured on ONNX Runtime 1.31.1, CPU provider, a W8A8 QDQ group ``DequantizeLinear ->
Gemm`` whose output's only reader is a Relu that feeds another node fused into a float
``FusedGemm`` on weights dequantized at every run (GemmActivationFusion,
onnxruntime/core/optimizer/gemm_activation_fusion.cc, took the pair before the QDQ fusion);
the same group before a MatMul stayed a float MatMul. dlib's age net (``fc -> relu ->
mul(scalar)``, tests/real/test_real_vision8.py) was predicted as 6 integer kernels and ran 5.
With a QuantizeLinear after the Relu, ORT removes the Relu (the uint8 quantizer's saturation
is the Relu) and fuses ``Gemm -> QuantizeLinear`` into QGemm, as ``Conv -> Relu ->
QuantizeLinear`` becomes QLinearConv: so such a layer gets the Conv's output quantizer
(bitlens.core.targets.placement), and without it is predicted float
(bitlens.core.export.kernels.integer_kernel_layers). A Relu whose result is a graph output
did not fuse (QGemm, then a float Relu), nor did Sigmoid or a plain Mul after the Gemm.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from bitlens.core.model.types import Layer, NodeInfo


def float_unless_requantized(
    layer: Layer, readers: Mapping[str, Sequence[NodeInfo]], outputs: Collection[str]
) -> bool:
    """Whether ``layer`` is a Gemm/MatMul whose output's only reader is a Relu whose result
    another node reads (not a graph output)."""
    if layer.op_type not in ("Gemm", "MatMul") or not layer.outputs:
        return False
    t = layer.outputs[0]
    users = readers.get(t, ())
    return (
        t not in outputs
        and len(users) == 1
        and users[0].op_type == "Relu"
        and users[0].outputs[0] not in outputs
    )
