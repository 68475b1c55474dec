"""What every export build measures once, not per build (core/export/exporter.py, guards.py).

A size search builds dozens of exports in memory from one preparation (the export-cost
measurements of core/search/overheads.py alone: one per weight format and op type). Each
build measured the unchanged model it starts from (a whole-model serialization, and the
source's too where the model was converted), and each quantized layer that is no integer
kernel indexed every node's readers, which only a MatMul's answer depends on. The figures
must not change: the same bytes, from fewer measurements.
"""

from __future__ import annotations

import logging
from collections import Counter

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import editing, exporter, guards, sizing, spacetodepth
from bitlens.core.export import layers as export_layers
from bitlens.core.export.accounting import size_of
from bitlens.core.export.exporter import build, preflight
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.core.engine_models import small_cnn


def _engine(opset: int = 17) -> Engine:
    proto = small_cnn()
    proto.opset_import[0].version = opset
    model = from_proto(proto)
    engine = Engine(model, Dataset.random(model.info, n=6, seed=3), device="cpu")
    drain(engine.calibrate("minmax"))
    return engine


def test_start_sizes_measured_once_per_preparation(monkeypatch) -> None:
    engine = _engine(12)  # per-channel quantizers need opset 13: the model is converted
    plan = Plan.preset(engine.info, "W8A8")
    prepared = preflight(engine, plan)
    assert prepared.converted_file is not None
    src = engine.model.graph_proto
    calls: Counter = Counter()
    graph_bytes, measure = exporter.graph_bytes, exporter.file_bytes

    def counted_graph(model):
        calls["graph"] += 1
        return graph_bytes(model)

    def counted_file(model, graph=None):
        calls["source" if model is src else "file"] += 1
        return measure(model, graph)

    monkeypatch.setattr(exporter, "graph_bytes", counted_graph)
    monkeypatch.setattr(exporter, "file_bytes", counted_file)
    first = drain(build(engine, plan, None, prepared))
    once = Counter(calls)
    calls.clear()
    second = drain(build(engine, plan, None, prepared))
    # the second build measures neither the source nor the model it starts from
    assert calls["source"] == 0 and once["source"] == 1
    assert calls["graph"] == once["graph"] - 1
    # the same figures as measuring them anew
    assert size_of(first) == size_of(second)
    assert first.source_bytes == second.source_bytes == measure(src)
    assert second.base_bytes == first.base_bytes == measure(prepared.converted)
    assert second.model.SerializeToString() == first.model.SerializeToString()


def test_readers_indexed_only_for_a_matmul(monkeypatch) -> None:
    engine = _engine()
    # block-wise weights keep every layer off the integer kernels, each input quantized
    choice = LayerChoice(parse_format("int4 asym blk32"), parse_format("int8 sym"))
    plan = Plan(engine.info, {n: choice for n in engine.info.layer_names})
    expected = size_of(drain(build(engine, plan)))
    assert not any(r.integer_kernel for r in drain(build(engine, plan)).layers.values())
    indexed: list[int] = []
    consumers_of = guards.consumers_of

    def counted(g):
        indexed.append(len(g.node))
        return consumers_of(g)

    monkeypatch.setattr(guards, "consumers_of", counted)
    monkeypatch.setattr(export_layers, "consumers_of", counted, raising=False)
    got = size_of(drain(build(engine, plan)))
    assert got == expected
    # Conv, Conv, Gemm: ONNX Runtime requantizes each whatever reads it; only the guard
    # pass over the finished graph indexes the readers, once
    assert len(indexed) == 1, indexed


def test_graph_after_the_stem_rewrite_sized_once(monkeypatch) -> None:
    engine = _engine()
    plan = Plan.preset(engine.info, "W8A8")
    prepared = preflight(engine, plan)
    first = drain(build(engine, plan, None, prepared))  # measures the start, once
    assert any(r.integer_kernel and r.op_type == "Conv" for r in first.layers.values())
    sized: list[int] = []
    graph_bytes = sizing.graph_bytes

    def counted(model):
        sized.append(len(model.graph.node))
        return graph_bytes(model)

    for module in (sizing, exporter, spacetodepth):
        monkeypatch.setattr(module, "graph_bytes", counted)
    second = drain(build(engine, plan, None, prepared))
    assert size_of(second) == size_of(first)
    # the sizer's check once the pending nodes are in, which the stem rewrite starts from
    # (the old code sized the graph again before its integer-kernel Conv: 3), the finished
    # graph's; the graph the rewrite left is not sized again
    assert len(sized) == 2, sized


def test_built_model_serialized_once_for_the_checker_the_size_and_the_file(
    monkeypatch, tmp_path
) -> None:
    """The checker, the size and the written file read the one serialization the build made
    (each whole-model pass holds the interpreter lock: docs/benchmarks.md "uisearch (session
    15)"): the old code gave the checker the proto (which it serialized again), sized the
    model by ``ByteSize`` and serialized it once more to write it."""
    engine = _engine()
    plan = Plan.preset(engine.info, "W8A8")
    checked: list[object] = []
    real = exporter.onnx.checker.check_model
    monkeypatch.setattr(
        exporter.onnx.checker, "check_model", lambda m, *a, **k: checked.append(m) or real(m)
    )
    built = drain(build(engine, plan))
    assert checked == [built.serialized]  # bytes, not the proto to serialize again
    assert built.serialized == built.model.SerializeToString()
    assert size_of(built).file_bytes == built.model.ByteSize() == len(built.serialized)
    result = drain(exporter.export(engine, plan, tmp_path / "out.onnx"))
    assert (tmp_path / "out.onnx").read_bytes() == checked[-1]
    assert result.file_bytes == len(checked[-1])


def test_pending_nodes_bytes_are_checked_with_the_layers(monkeypatch, caplog) -> None:
    """The layers' records count the nodes still pending (inserted at the end): the check
    after they are in covers those bytes too, so a miscount is measured again the slow way
    (the old code checked before inserting them, and missed it)."""
    engine = _engine()
    plan = Plan.preset(engine.info, "W8A8")
    slow = drain(build(engine, plan, exact_sizes=True))
    real = editing.ExportState.pending_bytes
    monkeypatch.setattr(editing.ExportState, "pending_bytes", lambda self: real(self) + 1)
    with caplog.at_level(logging.WARNING, logger="bitlens.core.export.exporter"):
        built = drain(build(engine, plan))
    assert any("the slow way" in r.getMessage() for r in caplog.records)
    assert {k: r.bytes_file for k, r in built.layers.items()} == {
        k: r.bytes_file for k, r in slow.layers.items()
    }
