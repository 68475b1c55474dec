"""What the float graph's session declares as outputs: the tensors the float reference
fetches, not every float tensor.

The float graph (structure key ``((), (), ())``) exposes every float tensor of the model,
for min-max statistics (structure.py). ONNX Runtime gives each graph output a buffer of its
own that lives to the end of the run, fetched or not: on PP-OCRv4 rec (rapidocr-onnxruntime
1.4.4) 685 outputs, 245k minor page faults and 384-472 ms of system CPU in the open's float
reference, which fetches about 101 of them (docs/benchmarks.md, "openref" and "refoutputs",
session 15). Its session now declares only what the reference and the float plan's runs
fetch; the graph itself (``sim.model``: the sweep's suffix graphs, the checks that run it
another way, the min and max measured later) keeps every output.

A graph output also blocks every fusion through it, and with fewer of them ONNX Runtime
fused PP-OCRv4 rec's decomposed LayerNorms (into LayerNormalization) and x * sigmoid(1.702
x) (into QuickGelu): 2.6M of 46M kept values changed, by up to 7.6e-6. So the session leaves
out the graph transformers that replace a subgraph by a kernel computing it another way
(VALUE_FUSIONS); those that only remove nodes whose result is their input (Identity, x * 1,
a no-op Cast, Reshape chains) or fold constants keep every value. The names are ONNX
Runtime's transformer and rule names: onnxruntime/core/optimizer/graph_transformer_utils.cc
(GenerateTransformers, GenerateRewriteRules) and each transformer's header; a name this
build lacks is ignored (InferenceSession's ``disabled_optimizers``).
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from bitlens.core.model.proto_copy import copy_but

# False: the float session declares every float tensor, as before (tests and benchmarks compare)
FEWER = True

# Transformers and rules that compute a matched subgraph with another kernel or in another
# order (so possibly other float32 roundings). LayerNormFusion and GeluFusion are named per
# level (LayerNormFusionL1 in Level 1, ...L2 in Level 2: layer_norm_fusion.h).
VALUE_FUSIONS: tuple[str, ...] = (
    "AttentionFusion",
    "BiasDropoutFusion",
    "BiasGeluFusion",
    "BiasSoftmaxFusion",
    "ConvActivationFusion",
    "ConvAddActivationFusion",
    "ConvAddFusion",
    "ConvBNFusion",
    "ConvMulFusion",
    "DivMulFusion",
    "EmbedLayerNormFusion",
    "FastGeluFusion",
    "GeluFusion",
    "GeluFusionL1",
    "GeluFusionL2",
    "GemmActivationFusion",
    "GemmSumFusion",
    "GemmTransposeFusion",
    "LayerNormFusion",
    "LayerNormFusionL1",
    "LayerNormFusionL2",
    "MatMulAddFusion",
    "MatMulScaleFusion",
    "MatmulTransposeFusion",
    "QuickGeluFusion",
    "SimplifiedLayerNormFusion",
    "SkipLayerNormFusion",
)


def declared_only(model: onnx.ModelProto, own: int, keep: Iterable[str]) -> onnx.ModelProto:
    """A copy of the float graph ``model`` whose outputs are its first ``own`` (the
    simulation graph's own: model outputs, tensors crossing a cut) and those of ``keep``."""
    wanted = set(keep)
    declared = [
        *model.graph.output[:own],
        *(v for v in model.graph.output[own:] if v.name in wanted),
    ]
    copy = copy_but(model, onnx.ModelProto(), ("graph",))
    copy_but(model.graph, copy.graph, ("output",))  # not every output, to delete most of them
    copy.graph.output.extend(declared)
    return copy
