"""Float constants of a model that are not layer weights: what quantization leaves as is.

The layer table totals only what Bitlens can quantize. khmersm's segmenter keeps a
1.5 MiB positional-encoding table (``[1, 2048, 192]``, read by a Slice) next to 5.2 MiB of
layer weights, so its W8A8 file is 3.0 MB, not the 1.3 MiB the layer totals suggest; the
inspect report says how much stays float.
"""

from __future__ import annotations

import math

import onnx

from bitlens.core.model.types import ModelInfo

_FLOAT_BYTES = {
    onnx.TensorProto.FLOAT: 4,
    onnx.TensorProto.DOUBLE: 8,
    onnx.TensorProto.FLOAT16: 2,
    onnx.TensorProto.BFLOAT16: 2,
}


def other_float_tensors(proto: onnx.ModelProto, info: ModelInfo) -> tuple[int, int]:
    """(count, bytes) of the main graph's float initializers that no layer reads as a weight
    (biases, normalization parameters, tables), sized from their dims: nothing is read."""
    weights = {w.name for layer in info.layers for w in layer.weights}
    count = nbytes = 0
    for t in proto.graph.initializer:
        size = _FLOAT_BYTES.get(t.data_type)
        if size is None or t.name in weights:
            continue
        count += 1
        nbytes += math.prod(t.dims) * size
    return count, nbytes
