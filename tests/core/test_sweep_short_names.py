"""A sweep's top rows show long layer names by what tells them apart in the whole model.

mk8dx-table-reader's tf2onnx bidirectional LSTM names its loop MatMuls
``functional_2_1/.../forward_lstm_1/while/lstm_cell_1/MatMul_1`` and ``.../backward_...``;
``bitlens sweep`` shortened only the names of the rows it printed, so a top ten holding one
of the two showed it as ``MatMul_1``, which names neither, and ``--pin MatMul_1`` found no
layer. Here two MatMuls with such names, one row shown.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from bitlens.cli import main
from bitlens.cli.names import resolve_layer
from bitlens.core.model.loader import from_proto
from tests.builders import FLOAT, init, model, weights

SCOPE = "functional_2_1/functional_1/bidirectional_1"
NAMES = [f"{SCOPE}/{d}_lstm_1/while/lstm_cell_1/MatMul_1" for d in ("forward", "backward")]


def two_directions() -> onnx.ModelProto:
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h"], name=NAMES[0]),
        helper.make_node("MatMul", ["h", "w1"], ["y"], name=NAMES[1]),
    ]
    g = helper.make_graph(
        nodes,
        "two_directions",
        [helper.make_tensor_value_info("x", FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 16])],
        [
            init("w0", weights((16, 16), seed=1, fan_in=16, channel_axis=1)),
            init("w1", weights((16, 16), seed=2, fan_in=16, channel_axis=1)),
        ],
    )
    return model(g)


def test_a_top_row_names_its_layer(tmp_path: Path, capsys) -> None:
    path = tmp_path / "two_directions.onnx"
    onnx.save(two_directions(), str(path))
    rc = main(["sweep", str(path), "--top", "1", "--samples", "4", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    row = lines[lines.index(next(x for x in lines if x.startswith("---"))) + 1]
    shown = row.split("  ")[0]
    info = from_proto(two_directions()).info
    assert resolve_layer(shown, info) in NAMES, shown
    assert shown.startswith(("forward", "backward")), shown
