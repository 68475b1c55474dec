"""Large external tensors stay in their files and are read through memory maps; the numbers
are those of the same model with every weight in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model import external
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan


def mlp_external(width: int = 512) -> onnx.ModelProto:
    """x[N,w] -> MatMul(W0) -> Relu -> MatMul(Transpose(W1)) -> Add(b) -> y

    W0 and W1 are 1 MiB each (memory-mapped once saved externally); Transpose(W1) is a
    constant subgraph the loader folds, reading W1 from its file; b is small (read in)."""
    rng = np.random.default_rng(1)
    w0 = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    w1 = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    b = rng.standard_normal(width).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W0"], ["h"], name="mm0"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Transpose", ["W1"], ["W1t"], name="t", perm=[1, 0]),
        helper.make_node("MatMul", ["r", "W1t"], ["m"], name="mm1"),
        helper.make_node("Add", ["m", "b"], ["y"], name="add"),
    ]
    g = helper.make_graph(
        nodes,
        "mlp_external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        [numpy_helper.from_array(w0, "W0"), numpy_helper.from_array(w1, "W1"),
         numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    return m


def _save(tmp_path: Path, external_data: bool) -> Path:
    path = tmp_path / ("ext.onnx" if external_data else "whole.onnx")
    onnx.save_model(
        mlp_external(),
        path,
        save_as_external_data=external_data,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return path


def test_large_external_tensors_are_mapped_and_give_the_same_numbers(tmp_path: Path) -> None:
    mapped = load_model(_save(tmp_path, True))
    whole = load_model(_save(tmp_path, False))
    still_outside = {t.name for t in external.external_tensors(mapped.graph_proto)}
    assert still_outside == {"W0"}  # W1 was folded (read from its file), b read in
    w0 = mapped.weight("W0")
    np.testing.assert_array_equal(w0, whole.weight("W0"))
    assert not w0.flags.writeable
    assert ("", "W0") not in mapped._cache  # maps are not kept
    np.testing.assert_array_equal(mapped.weight("W1t"), whole.weight("W1t"))
    assert mapped.nbytes >= 512 * 512 * 4
    data = Dataset.random(mapped.info, n=6, seed=2, dims={"N": 3})
    plan = Plan.preset(mapped.info, "W8A8")
    got = Engine(mapped, data, device="cpu").evaluate(plan)
    want = Engine(whole, data, device="cpu").evaluate(Plan.preset(whole.info, "W8A8"))
    assert got == want
    assert external.external_tensors(mapped.graph_proto)  # the engine read nothing in
    # the whole proto, for what needs it in memory (the exporter)
    proto = mapped.proto
    assert not external.external_tensors(proto)
    np.testing.assert_array_equal(
        numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == "W0")),
        whole.weight("W0"),
    )


def test_released_pages_of_a_mapped_weight_read_the_same_values(tmp_path: Path) -> None:
    mapped = load_model(_save(tmp_path, True))
    w0 = mapped.weight("W0")
    before = np.array(w0)
    assert external.release_pages(w0)
    np.testing.assert_array_equal(w0, before)  # read again from the file's pages
    assert not external.release_pages(before)  # an array in memory: nothing to drop
