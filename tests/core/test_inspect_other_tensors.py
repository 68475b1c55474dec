"""``bitlens inspect`` says how many float bytes are not layer weights (they stay float):
khmersm's 1.5 MiB positional table made its W8A8 file 3.0 MB where the layer totals said
1.3 MiB, with nothing in the report to say why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.cli import main
from tests.core.engine_models import _model


def with_table() -> onnx.ModelProto:
    """x[N, 8] -> MatMul(W[8, 8]) -> Add(b[8]) -> Add(table[8]) -> y; the table is no weight."""
    rng = np.random.default_rng(6)
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="fc"),
            helper.make_node("Add", ["h", "b"], ["hb"]),
            helper.make_node("Add", ["hb", "table"], ["y"]),
        ],
        "with_table",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [
            numpy_helper.from_array(rng.normal(size=(8, 8)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b"),
            numpy_helper.from_array(rng.normal(size=(256, 8)).astype(np.float16)[0], "table"),
        ],
    )
    return _model(g)


def test_inspect_reports_the_float_tensors_that_are_not_layer_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(with_table(), path)
    assert main(["inspect", str(path), "--json"]) == 0
    other = json.loads(capsys.readouterr().out)["totals"]["other_float_tensors"]
    assert other == {"count": 2, "bytes": 8 * 4 + 8 * 2}  # the fp32 bias and the fp16 table
    assert main(["inspect", str(path)]) == 0
    assert "not in the table: 48 B in 2 float tensors" in capsys.readouterr().out
