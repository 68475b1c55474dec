"""Outputs whose rows a TopK picks are named, with the node that picks them.

isbnx's YOLO26n (an NMS-free Ultralytics head) ends in TopK + GatherElements: its
``[batch, 300, 6]`` output holds the 300 best candidates by score, and quantization swaps
near-equal candidates, so ``bitlens eval`` compared other boxes position by position and
said nothing. Here a MatMul scores 8 candidates; the TopK of their best column picks 4 whose
rows are gathered (``det``), next to the MatMul's own output (``raw``) and the picked
positions themselves (``labels``), which are compared as labels and not named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from bitlens.cli import main
from bitlens.core.model.loader import from_proto
from bitlens.core.model.selected_outputs import selected_outputs
from tests.builders import FLOAT, init, model, weights

INT64 = onnx.TensorProto.INT64


def topk_head() -> onnx.ModelProto:
    """x[1, 8, 16] -> MatMul(w[16, 5]) -> raw[1, 8, 5]; the TopK (k=4) of each candidate's
    best column picks rows of raw: det[1, 4, 5]; labels: the picked positions."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["raw"], name="head"),
        helper.make_node("ReduceMax", ["raw"], ["best"], name="best", axes=[2], keepdims=0),
        helper.make_node("TopK", ["best", "k"], ["top", "labels"], name="pick", axis=1),
        helper.make_node("Unsqueeze", ["labels", "last"], ["rows"], name="rows"),
        helper.make_node("Tile", ["rows", "reps"], ["rows5"], name="tile"),
        helper.make_node("GatherElements", ["raw", "rows5"], ["det"], name="gather", axis=1),
    ]
    g = helper.make_graph(
        nodes,
        "topk_head",
        [helper.make_tensor_value_info("x", FLOAT, [1, 8, 16])],
        [
            helper.make_tensor_value_info("det", FLOAT, [1, 4, 5]),
            helper.make_tensor_value_info("raw", FLOAT, [1, 8, 5]),
            helper.make_tensor_value_info("labels", INT64, [1, 4]),
        ],
        [
            init("w", weights((16, 5), seed=3, fan_in=16, channel_axis=1)),
            init("k", np.array([4], np.int64)),
            init("last", np.array([2], np.int64)),
            init("reps", np.array([1, 1, 5], np.int64)),
        ],
    )
    return model(g, opset=13)


def test_the_gathered_output_is_named_with_its_topk() -> None:
    assert selected_outputs(topk_head().graph) == {"det": "pick"}


def test_a_second_pick_among_picked_rows_names_the_later_topk() -> None:
    """YOLO26 takes the TopK of the candidates' scores, gathers them, and takes a TopK again
    over the gathered scores: the output is named with the second."""
    m = topk_head()
    g = m.graph
    g.node.extend([
        helper.make_node("ReduceMax", ["det"], ["det_best"], name="det_best", axes=[2],
                         keepdims=0),
        helper.make_node("TopK", ["det_best", "k2"], ["top2", "pos2"], name="pick2", axis=1),
        helper.make_node("Unsqueeze", ["pos2", "last"], ["rows2"], name="rows2"),
        helper.make_node("Tile", ["rows2", "reps"], ["rows2_5"], name="tile2"),
        helper.make_node("GatherElements", ["det", "rows2_5"], ["final"], name="gather2", axis=1),
    ])  # fmt: skip
    g.initializer.append(init("k2", np.array([2], np.int64)))
    g.output.append(helper.make_tensor_value_info("final", FLOAT, [1, 2, 5]))
    onnx.checker.check_model(m)
    assert selected_outputs(g) == {"det": "pick", "final": "pick2"}


def test_the_note_names_the_output_and_the_topk(tmp_path: Path, capsys) -> None:
    notes = from_proto(topk_head()).info.notes
    assert len([n for n in notes if "picked by score" in n]) == 1
    path = tmp_path / "topk_head.onnx"
    onnx.save(topk_head(), str(path))
    rc = main(["eval", str(path), "--preset", "W8A8", "--samples", "4", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0
    line = next(x for x in err.splitlines() if "picked by score" in x)
    assert "'det' (by 'pick')" in line and "'raw'" not in line and "'labels'" not in line
