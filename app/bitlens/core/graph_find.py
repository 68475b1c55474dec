"""Finding nodes of a model graph by name, op type or number format, without Qt.

The graph view's find box matches what a user knows about a node: part of
its name (``conv2``), its op type (``MatMul``) or the format a layer is
planned in (``int4``, ``fp16``, ``float`` for a layer kept in float). Every
word of the query must match one of those, case-insensitively; matches come
in the model's topological order so that Enter walks down the graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import Plan


@dataclass(frozen=True)
class Findable:
    """What the find box can match on for one node of the drawn graph."""

    name: str  # the graph's node name ("input:x" / "output:y" for model inputs and outputs)
    op_type: str
    formats: tuple[str, ...] = ()  # a layer's weight and activation formats in the plan

    @property
    def text(self) -> str:
        return " ".join((self.name, self.op_type, *self.formats)).lower()


def findables(info: ModelInfo, plan: Plan | None, names: Iterable[str]) -> list[Findable]:
    """One :class:`Findable` per drawn node ``names`` (in that order)."""
    nodes = {n.name: n for n in info.nodes}
    out = []
    for name in names:
        if name.startswith(("input:", "output:")):
            kind, _, _tensor = name.partition(":")
            out.append(Findable(name, f"model {kind}"))
            continue
        node = nodes.get(name)
        op = node.op_type if node is not None else ""
        formats: tuple[str, ...] = ()
        if plan is not None and name in info.layer_index:
            choice = plan[name]
            w = "float" if choice.weight is None else choice.weight.name
            a = "float" if choice.activation is None else choice.activation.name
            formats = (w, a + (" dynamic" if choice.dynamic else ""))
        out.append(Findable(name, op, formats))
    return out


def find(items: Sequence[Findable], query: str) -> list[str]:
    """Names of the items whose name, op type or formats hold every word of ``query``."""
    words = query.lower().split()
    if not words:
        return []
    return [it.name for it in items if all(w in it.text for w in words)]
