"""How many nodes read a tensor of the model being exported (core/export/editing.py
``ExportState.consumers``): on a model without subgraphs, a pass over the main graph's nodes
alone, without reading each node's attributes for subgraphs (docs/finding-a-plan.md, "Search
time (session 13)"); with subgraphs, their nodes count too."""

from __future__ import annotations

import onnx
import pytest

from bitlens.core.engine.graphs import iter_nodes
from bitlens.core.export import editing
from bitlens.core.export.editing import ExportState
from tests import builders


def _counts(model: onnx.ModelProto) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in iter_nodes(model.graph):
        for t in n.input:
            out[t] = out.get(t, 0) + 1
    return out


def test_flat_model_counted_on_its_main_graph(monkeypatch) -> None:
    model = builders.conv_net()
    expected = _counts(model)

    def no_walk(graph):
        raise AssertionError("walked the subgraphs of a model that has none")

    monkeypatch.setattr(editing, "iter_nodes", no_walk)  # the old code walked them every call
    state = ExportState(model, set())
    assert {t: state.consumers(t) for t in expected} == expected
    assert state.consumers("not-a-tensor") == 0


@pytest.mark.parametrize("build", [builders.lstm_in_if, builders.loop_with_matmul])
def test_subgraph_readers_counted(build) -> None:
    model = build()
    expected = _counts(model)
    state = ExportState(model, set())
    assert {t: state.consumers(t) for t in expected} == expected
    # some tensor is read inside a subgraph only (the branches' and the loop body's inputs)
    main = {t for n in model.graph.node for t in n.input}
    assert any(t not in main for t in expected)
