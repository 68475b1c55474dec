"""The export's main graph indexed once per build: each node by the tensors it produces,
each initializer by its name, with their positions.

The builder looks up a layer's node (``graphs.node_producing``) and removes each float
weight's definition (``graphs.remove_definitions``) once per layer and weight; each of those
scanned every node or initializer of the graph in Python, about 150 scans per build of
PP-OCRv4 rec's 860 nodes (docs/benchmarks.md, "exportscan (session 16)"). Here the nodes
and initializers are listed once, and every answer is checked where it is used: the element
at the indexed position must be the very message found (upb keeps one wrapper per element
while it is referenced, and the index holds them: ``core/export/sizing.py`` relies on the
same), so an edit made around the index (a node inserted, a list rebuilt by ``set_nodes``)
makes it read the graph again instead of answering wrong. Graphs whose names are not unique
(an invalid model the checker would reject) are answered by the scans themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import onnx

from bitlens.core.engine.graphs import (
    drop_inputs,
    initializer_named,
    node_producing,
    producers,
    remove_definition,
)
from bitlens.core.errors import EngineError

# Off: the builder scans the graph as before (benchmarks and the tests that compare the two).
INDEXED = True


class _Positions:
    """The elements of one repeated field, by name, and where each sits."""

    def __init__(
        self,
        field,
        names: Callable[[object], Iterable[str]],
        by_name: Callable[[], dict[str, object]],
    ):
        """``by_name()``: each name of ``field`` and its first element named so."""
        self._field = field
        self._names = names
        self._by_name = by_name
        self._read()

    def _read(self) -> None:
        self.held = list(self._field)  # the wrappers, kept alive: their ids stay unique
        self.ids = list(map(id, self.held))
        self.by_name = self._by_name()
        # "" names a node's omitted optional output, which nodes may share
        named = sum(1 for m in self.held for n in self._names(m) if n)
        self.unique = len(self.by_name) - ("" in self.by_name) == named

    def find(self, name: str) -> tuple[int, object] | None:
        """(position, element) of the first element named ``name``, checked; None if none."""
        m = self.by_name.get(name)
        if m is None and not any(name in self._names(e) for e in self._field):
            # none has it (the scan a lookup made before the index, as cheap): PP-OCRv4 rec's
            # biases are Constant nodes, and the int32 bias asks for an initializer first
            return None
        if m is not None and (i := self._position(m, name)) is not None:
            return i, m
        self._read()  # added or moved: the graph changed around the index
        m = self.by_name.get(name)
        i = None if m is None else self._position(m, name)
        return None if i is None else (i, m)

    def _position(self, m: object, name: str) -> int | None:
        """Where ``m`` sits in the field, if the index has it right and it is still named so."""
        try:
            i = self.ids.index(id(m))
        except ValueError:
            return None
        if i < len(self._field) and self._field[i] is m and name in self._names(m):
            return i
        return None

    def delete(self, i: int) -> None:
        """Remove the element at ``i`` (as :meth:`find` gave it) from the field and the index."""
        m = self.held.pop(i)
        del self.ids[i]
        del self._field[i]
        for n in self._names(m):
            if self.by_name.get(n) is m:
                del self.by_name[n]


class GraphIndex:
    """Nodes by output and initializers by name for one graph (the export's main graph)."""

    def __init__(self, g: onnx.GraphProto):
        self.g = g
        self._nodes = _Positions(g.node, lambda n: n.output, lambda: producers(g))
        self._inits = _Positions(g.initializer, lambda t: (t.name,), self._initializers)

    def _initializers(self) -> dict[str, object]:
        return {t.name: t for t in reversed(self.g.initializer)}  # the first of each name

    def node_producing(self, tensor: str) -> tuple[int, onnx.NodeProto]:
        """What ``graphs.node_producing(g, tensor)`` returns."""
        if not self._nodes.unique or not tensor:
            return node_producing(self.g, tensor)
        found = self._nodes.find(tensor)
        if found is None:
            raise EngineError(f"no node produces {tensor!r}")
        return found  # type: ignore[return-value]

    def initializer(self, name: str) -> onnx.TensorProto | None:
        """The initializer named ``name`` (the first), or None."""
        if not self._inits.unique:
            return initializer_named(self.g, name)
        found = self._inits.find(name)
        return None if found is None else found[1]  # type: ignore[return-value]

    def remove_definition(self, name: str, from_constant_node: bool) -> bool:
        """What ``graphs.remove_definition(g, name, from_constant_node)`` does."""
        field = self._nodes if from_constant_node else self._inits
        if not field.unique:
            return remove_definition(self.g, name, from_constant_node)
        found = field.find(name)
        if found is None or (from_constant_node and found[1].op_type != "Constant"):  # type: ignore[attr-defined]
            return False
        field.delete(found[0])
        if not from_constant_node:
            drop_inputs(self.g, {name})
        return True
