"""The float values a sweep's suffixes start from that the float reference does not keep
(integer shape arithmetic, floats between kept tensors) come from a graph of only their
producers (engine/sweep.py, ``_keep_float_values``; suffix.SuffixGraph.producers_model).
Before, an integer one made the sweep build a session of the whole float graph with it
exposed and run it once per feed: 0.4-0.5 s of CPU, serial, at the start of every sweep
of rapidocr's PP-OCRv4 recognizer (``p2o.helper.concat.*``). The values must be those the
whole float graph computes, bit for bit, so that the entries are those of before."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, rewrite, sweep
from bitlens.core.model.loader import from_proto
from tests.builders import FLOAT, init, model, weights
from tests.core.test_engine_scale import _run_sweep
from tests.core.test_sweep_shape_inputs import _const


def skip_through_tanh():
    """x -> mm_a -> a -> mm_b -> b -+-> Add -> s -> mm_c -> y
                     a -> Tanh -> t -+
    mm_b's suffix starts from ``t``, which no layer reads or writes: the float reference
    does not keep it, so the sweep computes it before its runs."""
    nodes = [
        helper.make_node("MatMul", ["x", "Wa"], ["a"], name="mm_a"),
        helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
        helper.make_node("MatMul", ["a", "Wb"], ["b"], name="mm_b"),
        helper.make_node("Add", ["b", "t"], ["s"], name="skip"),
        helper.make_node("MatMul", ["s", "Wc"], ["y"], name="mm_c"),
    ]
    g = helper.make_graph(
        nodes,
        "skip_through_tanh",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [
            init("Wa", weights((8, 8), seed=1)),
            init("Wb", weights((8, 8), seed=2)),
            init("Wc", weights((8, 4), seed=3)),
        ],
    )
    return model(g)


def reshape_by_input_shape():
    """x[N,6,8] -> mm_a -> a -> Reshape(a, Concat(Shape(x)[:1], [-1])) -> mm_b -> y[N,4].
    The shape is computed after mm_a in graph order (as Paddle2ONNX writes PP-OCRv4's SVTR
    blocks, ``p2o.helper.concat.*``), so no cut before a layer exposes it: mm_a's suffix
    reads an int64 tensor the float session does not fetch."""
    i64 = lambda v: np.array(v, np.int64)  # noqa: E731
    mk = helper.make_node
    nodes = [
        mk("MatMul", ["x", "Wa"], ["a"], name="mm_a"),
        mk("Shape", ["x"], ["xs"]), _const("zero", i64([0])), _const("one", i64([1])),
        _const("rest", i64([-1])), mk("Slice", ["xs", "zero", "one"], ["n"]),
        mk("Concat", ["n", "rest"], ["flat"], axis=0), mk("Reshape", ["a", "flat"], ["a2"]),
        mk("MatMul", ["a2", "Wb"], ["y"], name="mm_b"),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes,
        "reshape_by_input_shape",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 6, 8])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", 4])],
        [init("Wa", weights((8, 8), seed=1)), init("Wb", weights((48, 4), seed=2))],
    )
    return model(g, 14)


def _whole_graph_values(engine: Engine, names: list[str], i: int) -> list[np.ndarray]:
    """``names`` on evaluation feed ``i`` from a session of the whole float graph with
    them exposed (the straightforward way, and the sweep's before)."""
    proto = onnx.ModelProto()
    proto.CopyFrom(engine._session_for({})[0].model)
    exposed = {v.name for v in proto.graph.output}
    proto.graph.output.extend(
        rewrite.value_info_for(engine.info, n) for n in names if n not in exposed
    )
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    wanted = {a.name for a in sess.get_inputs()}
    feed = {**engine.data.samples[i], **engine._float_weights()}
    return sess.run(names, {k: v for k, v in feed.items() if k in wanted})


@pytest.mark.parametrize(
    ("build", "dims", "missing"),
    [
        (skip_through_tanh, {"N": 3}, ["t"]),  # a float no layer reads or writes
        (reshape_by_input_shape, {"N": 3}, ["flat"]),  # int64 shape arithmetic
    ],
)
def test_values_a_suffix_starts_from_come_from_their_producers_alone(
    build, dims, missing, monkeypatch
) -> None:
    loaded = from_proto(build())
    engine = Engine(loaded, Dataset.random(loaded.info, n=4, seed=5, dims=dims), device="cpu")
    ref = engine._ensure_ref()
    assert not set(missing) & set(ref.types)  # not kept by the float reference
    built: list[onnx.ModelProto] = []
    real = sweep.make_session

    def counting(proto, *a, **k):
        built.append(proto)
        return real(proto, *a, **k)

    monkeypatch.setattr(sweep, "make_session", counting)
    entries = _run_sweep(engine)
    assert entries
    whole = len(engine._session_for({})[0].model.graph.node)
    # no session of the whole float graph: one small graph computes what is missing
    assert all(len(m.graph.node) < whole for m in built)
    producers = [m for m in built if m.graph.name == "bitlens_producers"]
    assert len(producers) == 1
    assert [v.name for v in producers[0].graph.output][: len(missing)] == missing
    assert len(producers[0].graph.node) < whole
    for i in engine.data.evaluation:
        for name, expected in zip(missing, _whole_graph_values(engine, missing, i), strict=True):
            got = np.asarray(ref[name][i])
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)
