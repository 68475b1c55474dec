"""A TopK whose scores quantization cannot move picks no rows that could swap.

PyTorch's ``pack_padded_sequence(enforce_sorted=False)`` exports a TopK over the integer
sequence lengths: its indices order the batch's rows before the recurrent layer (and a second
TopK puts them back). pythainlp 5.4.0's thai2rom encoder (tests/real/test_real_text8.py)
was read as a detector's pick: its three outputs were "measured on the candidates before the
pick", which resolved to the embedding table, so ``eval`` printed the table's weight SQNR
(43.4 dB) as every output's error instead of the outputs' own (47.5 / 47.9 / 54.5 dB).

    ids[2, 6] int64 --------------------------------+
    lengths[2] int32 -> TopK (k=2) -> order -> Gather(ids, order, axis 0) -> Gather(emb) -> MatMul(w) -> y
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from bitlens.cli import main
from bitlens.core.model.selected_outputs import before_pick, selected_outputs
from tests.builders import FLOAT, init, model, weights

INT64 = onnx.TensorProto.INT64
INT32 = onnx.TensorProto.INT32


def sorted_by_length(scores_from_table: bool = False) -> onnx.ModelProto:
    """The sketch above. ``scores_from_table``: the TopK ranks a float score per row
    (ReduceMax of the embedded rows, which quantization moves) and the picked rows are
    gathered from the embedding table itself (a stored table's rows, no activations)."""
    if scores_from_table:
        nodes = [
            helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
            helper.make_node("ReduceMax", ["e"], ["score"], name="score", axes=[1, 2], keepdims=0),
            helper.make_node("TopK", ["score", "k"], ["top", "order"], name="sort"),
            helper.make_node("Gather", ["emb", "order"], ["picked"], name="rows"),
            helper.make_node("MatMul", ["picked", "w"], ["y"], name="proj"),
        ]
        out_shape = [2, 8]
    else:
        nodes = [
            helper.make_node("Cast", ["lengths"], ["len64"], name="cast", to=INT64),
            helper.make_node("TopK", ["len64", "k"], ["top", "order"], name="sort"),
            helper.make_node("Gather", ["ids", "order"], ["ids_sorted"], name="reorder", axis=0),
            helper.make_node("Gather", ["emb", "ids_sorted"], ["e"], name="embed"),
            helper.make_node("MatMul", ["e", "w"], ["y"], name="proj"),
        ]
        out_shape = [2, 6, 8]
    g = helper.make_graph(
        nodes,
        "sorted_by_length",
        [
            helper.make_tensor_value_info("ids", INT64, [2, 6]),
            helper.make_tensor_value_info("lengths", INT32, [2]),
        ],
        [helper.make_tensor_value_info("y", FLOAT, out_shape)],
        [
            init("emb", weights((20, 16), seed=4, fan_in=16)),
            init("w", weights((16, 8), seed=5, fan_in=16, channel_axis=1)),
            init("k", np.array([2], np.int64)),
        ],
    )
    return model(g, opset=13)


def test_a_topk_over_integer_lengths_picks_nothing_that_swaps() -> None:
    g = sorted_by_length().graph
    assert selected_outputs(g) == {}
    assert before_pick(g) == {}


def test_rows_picked_from_a_stored_table_are_measured_as_they_are() -> None:
    """Float scores do move, so the output is still named; but the rows before its pick are
    the table's weights, and a weight's error is no output's: nothing is measured instead."""
    g = sorted_by_length(scores_from_table=True).graph
    assert selected_outputs(g) == {"y": "sort"}
    assert before_pick(g) == {}


def test_eval_reports_the_outputs_own_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "sorted.onnx"
    onnx.save(sorted_by_length(), str(path))
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, (4, 2, 6)).astype(np.int64)
    lengths = np.array([[6, 4], [3, 6], [5, 5], [2, 6]], np.int32)
    np.savez(tmp_path / "d.npz", ids=ids, lengths=lengths)
    rc = main(["eval", str(path), "--preset", "W8A8", "--data", str(tmp_path / "d.npz"),
               "--device", "cpu"])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "picked by score" not in out.err and "before the pick" not in out.out
