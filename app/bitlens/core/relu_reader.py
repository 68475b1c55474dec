"""Gemm and MatMul layers ONNX Runtime runs in float unless their output is requantized.

Measured on ONNX Runtime 1.31.1, CPU provider, a W8A8 QDQ group ``DequantizeLinear ->
Gemm`` whose output's only reader is a Relu that feeds another node fused into a float
``FusedGemm`` on weights dequantized at every run (GemmActivationFusion,
onnxruntime/core/optimizer/gemm_activation_fusion.cc, took the pair before the QDQ fusion);
the same group before a MatMul stayed a float MatMul, and a ``MatMul -> Add(bias) -> Relu``
on a 2-D input became a FusedGemm too (MatMulAddFusion first). dlib's gender net (``fc -> relu ->
mul(scalar)``, tests/real/test_real_vision8.py) was predicted as 6 integer kernels and ran 5.
With a QuantizeLinear after the Relu (the next layer's 8-bit input), ORT removes the Relu
and fuses QGemm / QLinearMatMul, as ``Conv -> Relu -> QuantizeLinear`` becomes QLinearConv;
without one such a layer is predicted float and keeps its weights folded
(bitlens.core.export.kernels.integer_kernel_layers). Placing the Conv's output quantizer after
the Relu instead made ORT run them as integer kernels (gender-v1's export x0.75 of float
against x1.4), but changed what the search chose on three tests/core models: not done, see
docs/real-models.md "gemmrelu". A Relu whose result is a graph output did not fuse (QGemm,
then a float Relu), nor did Sigmoid or a plain Mul after the Gemm.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bitlens.core.model.types import Layer, ModelInfo


def relu_input(info: ModelInfo, layer: Layer, outputs: Collection[str]) -> str | None:
    """The tensor a Relu reads when ``layer`` is a Gemm/MatMul whose output has that Relu as
    its only reader (or, for a MatMul on a 2-D input, whose bias Add's output has) and the
    Relu's result is read by another node (not a graph output); None for any other layer.
    On a 3-D input ORT reshapes around the Gemm MatMulAddFusion makes, so the Relu does not
    fuse and the QGemm stays integer with a float output: measured, nothing to move there."""
    if layer.op_type not in ("Gemm", "MatMul") or not layer.outputs or not layer.activations:
        return None
    x = info.value_info.get(layer.activations[0]) or next(
        (i for i in info.inputs if i.name == layer.activations[0]), None
    )
    bias_add = (
        layer.op_type == "MatMul" and x is not None and x.shape is not None and len(x.shape) == 2
    )
    biases = {b.name for b in layer.biases} if bias_add else set()
    t = layer.outputs[0]
    for _ in range(2):  # the layer's output, then its bias Add's
        users = info.main_readers.get(t, ())
        if t in outputs or len(users) != 1:
            return None
        user = users[0]
        if user.op_type == "Relu":
            return t if user.outputs[0] not in outputs else None
        if user.op_type != "Add" or not biases & set(user.inputs) or not user.outputs:
            return None
        t = user.outputs[0]
    return None
