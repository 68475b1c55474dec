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

A pick whose scores no quantization can move is no such pick: PyTorch's
``pack_padded_sequence(enforce_sorted=False)`` exports a TopK over the integer sequence
lengths that orders the rows before an LSTM and puts them back after it (pythainlp's thai2rom
encoder, tests/real/test_real_text8.py). Its rows never swap, and the candidates "before the
pick" there were the embedding table's weights, whose error ``eval`` printed as the outputs'.
"""

from __future__ import annotations

import onnx

# op -> the output that holds the picked positions (TopK's indices, NMS's selected triples)
_PICKERS = {"TopK": 1, "NonMaxSuppression": 0}
# ops whose second input says which elements of the first are taken
_GATHERS = frozenset({"Gather", "GatherElements", "GatherND"})
# ops whose output depends on their input's shape only, never on its values
_SHAPE_ONLY = frozenset({"Shape", "Size"})
_FLOAT_TYPES = frozenset({
    onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
    onnx.TensorProto.DOUBLE,
})  # fmt: skip


def selected_outputs(graph: onnx.GraphProto) -> dict[str, str]:
    """Graph output -> the TopK/NonMaxSuppression node whose picked positions choose the
    values it holds: the positions reach the indices input of a Gather, GatherElements or
    GatherND (through any arithmetic on them), and the gathered values reach the output. The
    positions themselves as an output (a classifier's top-5 labels) are not listed: they are
    compared as labels."""
    if not any(node.op_type in _PICKERS for node in graph.node):
        return {}  # nothing picks positions: nothing is picked or chosen (4 ms of a load)
    _picked, chosen = _trace(graph)
    return {o.name: chosen[o.name] for o in graph.output if o.name in chosen}


def _trace(graph: onnx.GraphProto) -> tuple[dict[str, str], dict[str, str]]:
    """(tensors derived from picked positions, tensors holding values the positions chose),
    each -> the picker node."""
    picked: dict[str, str] = {}  # tensor derived from picked positions -> picker node
    chosen: dict[str, str] = {}  # tensor holding values the positions chose -> picker node
    moves = _float_derived(graph)
    for node in graph.node:  # ONNX graphs are topologically sorted
        label = node.name or node.op_type
        slot = _PICKERS.get(node.op_type)
        if slot is not None and not any(i in moves for i in node.input[:1]):
            slot = None  # scores no quantization moves (integer lengths): positions never swap
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
    return picked, chosen


def _float_derived(graph: onnx.GraphProto) -> set[str]:
    """Tensors whose values follow from float values (a float input, weight or constant):
    the only ones quantization can move. A node with a subgraph counts as reading them."""
    moves = {v.name for v in graph.input if v.type.tensor_type.elem_type in _FLOAT_TYPES}
    moves |= {t.name for t in graph.initializer if t.data_type in _FLOAT_TYPES}
    for node in graph.node:
        reads = node.op_type not in _SHAPE_ONLY and any(i in moves for i in node.input)
        if node.op_type == "Constant":
            reads = any(
                a.name in ("value_float", "value_floats")
                or (a.name == "value" and a.t.data_type in _FLOAT_TYPES)
                for a in node.attribute
            )
        if reads or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                        for a in node.attribute):  # fmt: skip
            moves.update(o for o in node.output if o)
    return moves


def before_pick(graph: onnx.GraphProto) -> dict[str, tuple[str, ...]]:
    """Each output of :func:`selected_outputs` -> the tensors its rows are picked from:
    the data inputs of the gathers whose picked positions choose its values, followed back
    through earlier picks (YOLO26 gathers again among the rows its first TopK gathered).
    An output picked from a stored table (an initializer or a Constant: rows of weights)
    has none: a weight's error is no output's.
    Sources that are together every output of one Split are read as the Split's input:
    YOLO26n splits its ``[1, 8400, 4 + classes]`` candidates into boxes and scores and
    gathers from both, so its ``output0`` is picked from that one tensor."""
    picked, chosen = _trace(graph)
    producer = {o: n for n in graph.node for o in n.output if o}
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    found: dict[str, tuple[str, ...]] = {}
    for out in (o.name for o in graph.output if o.name in chosen):
        sources: list[str] = []
        stack, seen = [out], {out}
        while stack:
            node = producer.get(stack.pop())
            if node is None:
                continue
            # indices derived from a pick: positions (picked), or positions gathered by
            # positions (chosen: YOLO26's second gather takes the first pick's rows)
            by_pick = len(node.input) > 1 and (node.input[1] in picked or node.input[1] in chosen)
            if node.op_type in _GATHERS and by_pick:
                data = node.input[0]
                if data not in chosen:  # positions gathered (data in picked) are no values
                    if data not in picked and data not in sources:
                        sources.append(data)
                    continue
                ahead = [data]
            else:
                ahead = [i for i in node.input if i in chosen]
            for t in ahead:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        node = producer.get(sources[0]) if sources else None
        if (
            node is not None
            and all(producer.get(t) is node for t in sources)
            and node.op_type == "Split"
            and set(sources) == {o for o in node.output if o}
        ):
            sources = [node.input[0]]
        if sources and not constants.intersection(sources):  # a table's rows are no candidates
            found[out] = tuple(sources)
    return found


def picked_text(tensor: str) -> str:
    """What an output's error measured before its pick says (eval, the window)."""
    return (
        f"its rows are picked by score: the error compares {tensor!r}, the candidates "
        "before the pick, each at its own position"
    )


def note(selected: dict[str, str], before: dict[str, tuple[str, ...]]) -> str | None:
    """One line naming each such output, the node that picks its rows and, where it is
    picked from one tensor (``before``, :func:`before_pick`), the tensor its error compares
    instead (Engine.measured_on)."""
    if not selected:
        return None
    named = ", ".join(f"{out!r} (by {node!r})" for out, node in selected.items())
    measured = {o: t[0] for o, t in before.items() if o in selected and len(t) == 1}
    head = (
        f"output(s) {named} hold rows picked by score: quantization moves the scores, so "
        "near-equal candidates swap places and compared position by position the output "
        "compares different rows"
    )
    if len(measured) == len(selected):
        on = ", ".join(f"{o!r} on {t!r}" for o, t in measured.items())
        return f"{head}; its error is measured on the candidates before the pick: {on}"
    return f"{head}, worse than the rows picked first; judge it by the picked results"
