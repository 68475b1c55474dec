"""Graph input and output dimensions written as ``-1``: dynamic, as ONNX Runtime reads them.

Older Paddle2ONNX exports (rapidocr's text-direction classifier, for one) declare a
dynamic axis as ``dim_value: -1`` instead of a ``dim_param`` or an empty dimension. The
ONNX checker accepts the file and ONNX Runtime runs it with any size there, reporting
the axis as ``None`` (``tests/core/test_negative_dims.py`` checks both), so Bitlens reads
it the same way: in its own copy of the model the dimension becomes unnamed and dynamic.
Other negative sizes stay an error.
"""

from __future__ import annotations

import onnx


def negative_dims_as_dynamic(model: onnx.ModelProto) -> int:
    """Clear every ``-1`` size of the main graph's inputs and outputs; how many were."""
    count = 0
    for vi in (*model.graph.input, *model.graph.output):
        if vi.type.WhichOneof("value") != "tensor_type":
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value == -1:
                d.Clear()
                count += 1
    return count


def negative_dims_note(count: int) -> str:
    if not count:
        return ""
    return (
        f"{count} input/output dimension(s) written as -1 read as dynamic "
        "(as ONNX Runtime reads them; the file is unchanged)"
    )
