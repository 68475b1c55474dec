"""Outputs whose rows a TopK or NonMaxSuppression picks: their error compares other rows.

An NMS-free detector ends by picking its best candidates: Ultralytics' YOLO26/YOLOv10 heads
(``end2end``) take the TopK of the class scores and gather those rows' boxes, scores and
classes into ``[batch, 300, 6]``. Quantization moves every score a little; the candidates
that score near zero (most of the 300 on a page with one barcode) swap places, and so the
same output position holds another box. Compared element by element, isbnx's YOLO26n read
1.1 dB at W8A8 on four 640-pixel pages while the box it picked first moved by at most 2
pixels (that row alone: 52 to 60 dB; tests/real/test_real_vision6.py). Such an output
is named at load time, with the node that picks its rows, so that no one reads its SQNR as
the model's error. Only the main graph is read: a selection inside a Loop body is not seen.
"""

from __future__ import annotations

import onnx

# op -> the output that holds the picked positions (TopK's indices, NMS's selected triples)
_PICKERS = {"TopK": 1, "NonMaxSuppression": 0}
# ops whose second input says which elements of the first are taken
_GATHERS = frozenset({"Gather", "GatherElements", "GatherND"})


def selected_outputs(graph: onnx.GraphProto) -> dict[str, str]:
    """Graph output -> the TopK/NonMaxSuppression node whose picked positions choose the
    values it holds: the positions reach the indices input of a Gather, GatherElements or
    GatherND (through any arithmetic on them), and the gathered values reach the output. The
    positions themselves as an output (a classifier's top-5 labels) are not listed: they are
    compared as labels."""
    picked: dict[str, str] = {}  # tensor derived from picked positions -> picker node
    chosen: dict[str, str] = {}  # tensor holding values the positions chose -> picker node
    for node in graph.node:  # ONNX graphs are topologically sorted
        label = node.name or node.op_type
        slot = _PICKERS.get(node.op_type)
        if slot is not None and len(node.output) > slot and node.output[slot]:
            picked[node.output[slot]] = label
        by_position = [picked[i] for i in node.input if i in picked]
        by_value = [chosen[i] for i in node.input if i in chosen]
        if node.op_type in _GATHERS and len(node.input) > 1 and node.input[1] in picked:
            by_value.insert(0, picked[node.input[1]])  # the pick this gather makes: the later
        if by_value and slot is not None:  # a pick among chosen values: the later picker
            by_value = [label]
        for k, out in enumerate(node.output):
            if not out:
                continue
            if by_value and not (slot is not None and k == slot):  # positions stay positions
                chosen.setdefault(out, by_value[0])
            if by_position and node.op_type not in _GATHERS:
                picked.setdefault(out, by_position[0])
    return {o.name: chosen[o.name] for o in graph.output if o.name in chosen}


def note(selected: dict[str, str]) -> str | None:
    """One line naming each such output and the node that picks its rows."""
    if not selected:
        return None
    named = ", ".join(f"{out!r} (by {node!r})" for out, node in selected.items())
    return (
        f"output(s) {named} hold rows picked by score: quantization moves the scores, so "
        "near-equal candidates swap places and the error compares different rows there, "
        "worse than the rows picked first; judge it by the picked results"
    )
