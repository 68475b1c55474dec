"""Notes on weights several layers read (sweep, inspect): one per group, or one for all.

A tf2onnx Siamese network (CapSpot's VGG16 matcher) runs both branches on the same 13 conv
weights; ``bitlens sweep`` printed 13 near-identical notes, in the order of the ranked
table, before the table itself, and ``bitlens inspect`` listed both branches' full bytes
with totals half their sum and no word on why.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.model.loader import from_proto
from bitlens.core.shared_weights import MAX_GROUP_NOTES, shared_notes
from tests.builders import weights
from tests.core.test_cli_inspect import run_cli


def siamese(blocks: int) -> onnx.ModelProto:
    """a, b [1, 4, 6, 6] -> ``blocks`` convs (4->4, 3x3) each, the weights shared between the
    branches -> y = |a' - b'|"""
    inits, nodes = [], []
    for k in range(blocks):
        inits.append(numpy_helper.from_array(weights((4, 4, 3, 3), seed=k), f"w{k}"))
    for side in ("a", "b"):
        x = side
        for k in range(blocks):
            nodes.append(helper.make_node("Conv", [x, f"w{k}"], [f"{side}{k}"],
                                          name=f"block{k}/conv_{side}", pads=[1] * 4))  # fmt: skip
            x = f"{side}{k}"
    nodes += [helper.make_node("Sub", [f"a{blocks - 1}", f"b{blocks - 1}"], ["d"]),
              helper.make_node("Abs", ["d"], ["y"])]  # fmt: skip
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 6, 6]) for n in "aby"]
    g = helper.make_graph(nodes, "siamese", io[:2], io[2:], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_a_few_groups_get_a_note_each_in_model_order() -> None:
    info = from_proto(siamese(2)).info
    swept = set(info.layer_names)
    notes = shared_notes(info, swept)
    assert [n.split(" shares")[0] for n in notes] == ["block0/conv_a", "block1/conv_a"]
    assert "(block0/conv_b)" in notes[0]


def test_many_groups_get_one_note() -> None:
    blocks = MAX_GROUP_NOTES + 2
    info = from_proto(siamese(blocks)).info
    (note,) = shared_notes(info, set(info.layer_names))
    assert note.startswith(f"{blocks} weights are each read by several layers ({2 * blocks} layers")
    assert "block0/conv_a, block1/conv_a, block2/conv_a, block3/conv_a and 1 more" in note
    # only the groups the sweep ran are noted
    (one,) = shared_notes(info, {"block0/conv_a", "block0/conv_b"})
    assert one.startswith("block0/conv_a shares its weights with 1 other layer(s)")


def test_inspect_says_why_the_totals_are_not_the_sum(tmp_path) -> None:
    path = tmp_path / "siamese.onnx"
    onnx.save(siamese(MAX_GROUP_NOTES + 1), path)
    res = run_cli("inspect", str(path), "--formats", "int8 sym ch")
    assert res.returncode == 0, res.stderr
    shared = [line for line in res.stdout.splitlines() if line.startswith("shared: ")]
    assert len(shared) == 1 and shared[0].endswith("the totals count each weight once"), shared
