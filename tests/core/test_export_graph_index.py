"""The export builder finds each layer's node and removes each weight's definition through
one index of the main graph per build (core/export/graph_index.py): the same exported
bytes and records as the scans of every node per lookup (graph_index.INDEXED off), and
the same answers as graphs.node_producing / remove_definition after edits made around it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.engine.graphs import node_producing, remove_definition
from bitlens.core.errors import EngineError
from bitlens.core.export import graph_index
from bitlens.core.export.accounting import size_of
from bitlens.core.export.editing import set_nodes
from bitlens.core.export.exporter import ExportOptions, build, preflight
from bitlens.core.export.graph_index import GraphIndex
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions, search
from tests.builders import mlp, opset12_constant_weights
from tests.core.engine_models import small_cnn
from tests.core.test_local_graph_index import constant_bias_cnn
from tests.core.test_search_passes import _labelled_engine


def _built(engine: Engine, plan: Plan, options: ExportOptions, indexed: bool, monkeypatch):
    monkeypatch.setattr(graph_index, "INDEXED", indexed)
    made: list[GraphIndex] = []
    real = graph_index.GraphIndex

    def counted(g):
        made.append(real(g))
        return made[-1]

    monkeypatch.setattr(graph_index, "GraphIndex", counted)
    built = drain(build(engine, plan, options, preflight(engine, plan, options)))
    assert bool(made) is indexed  # the path under test ran
    return built


@pytest.mark.parametrize(
    ("make", "preset", "options"),
    [
        # Conv weights and a bias in Constant nodes (paddle2onnx's way, as PP-OCRv4 rec)
        (constant_bias_cnn, "W8A8", ExportOptions()),
        # MatMul + Add: the int32 bias found through the Add, the float bias removed
        (mlp, "W8A8", ExportOptions()),
        # MatMulNBits replaces the layer's node where the index found it
        (mlp, "W4A16", ExportOptions(matmulnbits=True)),
        (opset12_constant_weights, "W4A8", ExportOptions()),
        (small_cnn, "W4A8", ExportOptions(weights="qdq")),
    ],
)
def test_exports_through_the_index_equal_those_of_the_scans(
    make, preset, options, monkeypatch
) -> None:
    loaded = from_proto(make())
    engine = Engine(loaded, Dataset.random(loaded.info, n=4, seed=7), device="cpu")
    try:
        drain(engine.calibrate("minmax"))
        plan = Plan.preset(loaded.info, preset)
        indexed = _built(engine, plan, options, True, monkeypatch)
        scanned = _built(engine, plan, options, False, monkeypatch)
    finally:
        engine.close()
    assert indexed.serialized == scanned.serialized
    assert size_of(indexed) == size_of(scanned)
    assert indexed.layers == scanned.layers
    assert indexed.notes == scanned.notes


def _chain() -> onnx.GraphProto:
    """c0 (Constant) -> ... a chain of Relus; an initializer w listed as an input too."""
    value = numpy_helper.from_array(np.ones(3, np.float32), "v")
    nodes = [helper.make_node("Constant", [], ["c0"], name="c0", value=value)]
    nodes += [helper.make_node("Relu", [f"t{i}" if i else "c0"], [f"t{i + 1}"]) for i in range(5)]
    w = numpy_helper.from_array(np.zeros(3, np.float32), "w")
    return helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("t5", onnx.TensorProto.FLOAT, [3])], [w],
    )  # fmt: skip


def _same(index: GraphIndex, g: onnx.GraphProto, tensor: str) -> None:
    try:
        want = node_producing(g, tensor)
    except EngineError:
        with pytest.raises(EngineError, match="no node produces"):
            index.node_producing(tensor)
        return
    got = index.node_producing(tensor)
    assert got[0] == want[0] and got[1] is want[1]


def test_the_index_answers_as_the_scan_after_edits_made_around_it() -> None:
    g = _chain()
    index = GraphIndex(g)
    _same(index, g, "t3")
    # a node inserted before the indexed ones moves them
    g.node.insert(0, helper.make_node("Identity", ["w"], ["early"]))
    for t in ("t3", "early", "c0", "missing"):
        _same(index, g, t)
    # a node deleted by someone else
    del g.node[2]
    for t in ("t3", "t1", "t2"):
        _same(index, g, t)
    # the node list rebuilt (every message a copy)
    set_nodes(g, list(g.node)[::-1])
    for t in ("t3", "c0", "early"):
        _same(index, g, t)
    # a node rewritten in place to produce another tensor
    g.node[0].output[0] = "renamed"
    for t in ("renamed", "t5"):
        _same(index, g, t)


def test_removals_through_the_index_leave_the_graph_a_removal_by_scan_leaves() -> None:
    scanned, g = _chain(), _chain()
    index = GraphIndex(g)
    for name, constant in (("c0", True), ("t2", True), ("w", False), ("w", False), ("x", False)):
        assert index.remove_definition(name, constant) is remove_definition(scanned, name, constant)
        assert g.SerializeToString() == scanned.SerializeToString()
    _same(index, g, "t4")  # positions after the removals


def test_a_graph_with_a_tensor_produced_twice_is_answered_by_the_scan() -> None:
    g = _chain()
    value = numpy_helper.from_array(np.ones(3, np.float32), "v2")
    g.node.append(helper.make_node("Constant", [], ["c0"], name="c0_again", value=value))
    scanned = onnx.GraphProto()
    scanned.CopyFrom(g)
    index = GraphIndex(g)
    _same(index, g, "c0")
    assert index.remove_definition("c0", True) is remove_definition(scanned, "c0", True)
    assert g.SerializeToString() == scanned.SerializeToString()  # both Constants gone


def test_a_search_through_the_index_tries_the_plans_of_the_scans(monkeypatch) -> None:
    """The search's size accounting builds exports: the same plans, errors and sizes."""
    opts = SearchOptions(
        Budget(size_ratio=0.8), front_probes=1, refine_evaluations=1, references=(),
        speed_check=False, float_activation_fallback=None, deployed_check=False,
    )  # fmt: skip
    found = []
    made: list[GraphIndex] = []
    real = graph_index.GraphIndex
    monkeypatch.setattr(graph_index, "GraphIndex", lambda g: made.append(real(g)) or made[-1])
    engine = _labelled_engine()
    for indexed in (True, False):
        monkeypatch.setattr(graph_index, "INDEXED", indexed)
        result = drain(search(engine, opts))
        assert bool(made) and len(result.tried) > 3  # the builds went through the index
        tried = [(p.plan, p.error, p.file_bytes) for p in result.tried]
        front = [(p.plan, p.error, p.file_bytes) for p in result.front]
        found.append((tried, front))
    assert found[0] == found[1]


def test_a_build_reads_the_graph_into_the_index_once(monkeypatch) -> None:
    """A bias held by a Constant node (asked for as an initializer first, by the int32 bias)
    is a miss the graph confirms, not a reason to read the whole graph again."""
    loaded = from_proto(constant_bias_cnn())
    engine = Engine(loaded, Dataset.random(loaded.info, n=4, seed=7), device="cpu")
    reads: list[object] = []
    real = graph_index._Positions._read
    monkeypatch.setattr(graph_index._Positions, "_read", lambda p: reads.append(p) or real(p))
    asked: list[tuple[str, bool]] = []
    find = graph_index._Positions.find

    def found(positions, name):
        asked.append((name, (answer := find(positions, name)) is not None))
        return answer

    monkeypatch.setattr(graph_index._Positions, "find", found)
    try:
        drain(engine.calibrate("minmax"))
        plan = Plan.preset(loaded.info, "W8A8")
        prepared = preflight(engine, plan)
        reads.clear()
        drain(build(engine, plan, None, prepared))
    finally:
        engine.close()
    assert ("b2", False) in asked  # the Constant bias asked for among the initializers
    assert len(reads) == 2  # the nodes and the initializers, each once
