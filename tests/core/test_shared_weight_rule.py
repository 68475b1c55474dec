"""One rule for a weight several layers read: the first reader in model order that quantizes
it stores it (shared_weights.stored_readers), and the byte totals, the search's sizes and
the exported file all count it there, once.

Two recurrent layers that share their recurrence weight ``r`` but each have their own input
weight: the search's file-size accounting counted ``r``'s saving for both (a layer stored
its weights unless every one of them had an earlier reader), and its points' weight bytes
and its sensitivities' bytes saved left out ``rnn2``'s own ``w2`` (only the first layer of a
sharing group was counted), although a plan gives the whole group one weight format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.formats import parse_format, storage_bytes
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions
from bitlens.core.search.measures import sensitivities
from bitlens.core.search.state import SearchState
from bitlens.core.shared_weights import stored_by, stored_readers
from bitlens.core.weights import stored_bytes
from tests.builders import FLOAT, init, model, weights

H, T, IN = 16, 3, 8
INT8 = "int8 sym ch"


def two_rnns_sharing_r() -> onnx.ModelProto:
    """x[T,1,8] -> RNN(w1, r) -> Squeeze -> RNN(w2, r) -> Squeeze -> y[T,1,16]."""
    nodes = [
        helper.make_node("RNN", ["x", "w1", "r"], ["y1", ""], "rnn1", hidden_size=H),
        helper.make_node("Squeeze", ["y1", "ax"], ["s1"], "sq1"),
        helper.make_node("RNN", ["s1", "w2", "r"], ["y2", ""], "rnn2", hidden_size=H),
        helper.make_node("Squeeze", ["y2", "ax"], ["y"], "sq2"),
    ]
    g = helper.make_graph(
        nodes,
        "two_rnns",
        [helper.make_tensor_value_info("x", FLOAT, [T, 1, IN])],
        [helper.make_tensor_value_info("y", FLOAT, [T, 1, H])],
        [
            init("w1", weights((1, H, IN), seed=1, fan_in=IN)),
            init("w2", weights((1, H, H), seed=2, fan_in=H)),
            init("r", weights((1, H, H), seed=3, fan_in=H)),
            init("ax", np.array([1], np.int64)),
        ],
    )
    return model(g)


def test_the_first_quantizing_reader_stores_a_shared_weight() -> None:
    info = from_proto(two_rnns_sharing_r()).info
    int8 = parse_format(INT8)
    readers = {k[1]: v[0] for k, v in stored_readers(info.layers).items()}
    assert readers == {"w1": "rnn1", "r": "rnn1", "w2": "rnn2"}
    floated = stored_readers(info.layers, {"rnn1": None, "rnn2": int8})
    assert {k[1]: v[0] for k, v in floated.items()} == {"w1": "rnn1", "r": "rnn2", "w2": "rnn2"}
    assert {n: [w.name for w in ws] for n, ws in stored_by(info).items()} == {
        "rnn1": ["w1", "r"], "rnn2": ["w2"],
    }  # fmt: skip


def test_search_sizes_stored_bytes_and_the_export_count_a_shared_weight_once(
    tmp_path: Path,
) -> None:
    m = from_proto(two_rnns_sharing_r())
    engine = Engine(m, Dataset.random(m.info, n=2, seed=0), device="cpu")
    plan = Plan.uniform(m.info, INT8)  # weights only: nothing besides the weights changes
    bound = parse_format(INT8).with_axis(1)  # gate rows
    want_after = storage_bytes(bound, (1, H, IN)) + 2 * storage_bytes(bound, (1, H, H))
    want_before = 4 * H * (IN + 2 * H)
    before, after = stored_bytes(m.info.layers, {n: plan[n].weight for n in m.info.layer_names})
    assert (before, after) == (want_before, want_after)
    # the search: a point's weight bytes, and its file-size accounting (nothing learnt yet,
    # so only the weights' bytes move between the float plan and this one)
    state = SearchState(engine, SearchOptions(Budget(size_ratio=0.5)))
    state._measure = lambda plan: (0.0, None)  # the error is not what this test is about
    assert state.point(plan).weight_bytes == want_after
    float_plan = Plan(m.info)
    assert state.size.file_bytes(plan) - state.size.file_bytes(float_plan) == after - before
    # the sensitivity of the group's one weight decision saves all its weights, each once
    (entry,) = drain(sensitivities(engine, [INT8]))
    assert (entry.layer, entry.bytes_saved) == ("rnn1", before - after)
    # the file: each float weight replaced once, by its stored reader, with one int8 copy
    out = tmp_path / "o.onnx"
    result = drain(export(engine, plan, out, ExportOptions()))
    assert {n: r.bytes_float for n, r in result.layers.items()} == {
        "rnn1": 4 * H * (IN + H), "rnn2": 4 * H * H,
    }  # fmt: skip
    stored = {
        s.name: s.nbytes for r in result.layers.values() for e in r.weights for s in e.stored
    }
    assert sum(stored.values()) == want_after
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    codes = sorted(v.shape for v in inits.values() if v.dtype == np.int8 and v.ndim == 3)
    assert codes == sorted([(1, H, IN), (1, H, H), (1, H, H)])
