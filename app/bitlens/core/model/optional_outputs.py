"""Names for a recurrent layer's omitted first output, in the loader's in-memory copy.

An RNN/GRU/LSTM may leave its optional output ``Y`` unnamed (``""``) when only the last
states ``Y_h``/``Y_c`` are read, a valid ONNX pattern (https://onnx.ai/onnx/operators/onnx__LSTM.html,
"optional outputs"). Every part of Bitlens measures a layer at its first output: with an
empty name there, the float reference listed ``""`` among its graph outputs and ONNX Runtime
refused the session ("Could not find OrtValue with name ''"), so no evaluation ran. Naming
the output changes no value the model computes (Y_h and Y_c are the same with Y
produced); the file is never written.
"""

from __future__ import annotations

import onnx

from bitlens.core.model.graph import subgraphs
from bitlens.core.model.layers import RECURRENT


def name_omitted_outputs(model: onnx.ModelProto) -> int:
    """Give each recurrent node whose first output is omitted a fresh name for it, in
    every graph of ``model`` (in place); how many were named."""
    if not _omits_one(model.graph):
        return 0  # the names below cost a pass over every node (3 ms of PP-OCRv4 rec's load)
    taken = set()
    graphs = [model.graph]
    while graphs:
        g = graphs.pop()
        taken.update(v.name for v in (*g.input, *g.output, *g.initializer))
        for node in g.node:
            taken.update(node.output)
            graphs.extend(sub for _, sub in subgraphs(node))
    named = 0
    graphs = [model.graph]
    while graphs:
        g = graphs.pop()
        for i, node in enumerate(g.node):
            graphs.extend(sub for _, sub in subgraphs(node))
            if node.op_type in RECURRENT and node.output and not node.output[0]:
                base = f"{node.name or f'{node.op_type}_{i}'}_Y"
                name, k = base, 1
                while name in taken:
                    name, k = f"{base}_{k}", k + 1
                taken.add(name)
                node.output[0] = name
                named += 1
    return named


def _omits_one(graph: onnx.GraphProto) -> bool:
    """Whether a recurrent node of ``graph`` or its subgraphs leaves its first output unnamed."""
    for node in graph.node:
        if node.op_type in RECURRENT and node.output and not node.output[0]:
            return True
        if any(_omits_one(sub) for _, sub in subgraphs(node)):
            return True
    return False
