"""Exporting a model whose large weights are in an external file reads only the weights the
plan leaves float (at the end, into the export); the file and every reported size equal
those of the same model read wholly into memory first (the exporter's old route)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import build
from bitlens.core.export.fidelity import export_and_check
from bitlens.core.model import external
from bitlens.core.model.loader import load_model
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.core.test_external_mapped import mlp_external


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        mlp_external(), path, save_as_external_data=True, all_tensors_to_one_file=True,
        location="weights.bin", size_threshold=0,
    )  # fmt: skip
    return path


def _engine(path: Path, read_in: bool) -> Engine:
    model = load_model(path)
    if read_in:
        assert not external.external_tensors(model.proto)  # every weight in memory
    engine = Engine(model, Dataset.random(model.info, n=4, seed=2, dims={"N": 3}), device="cpu")
    drain(engine.calibrate())
    return engine


@pytest.mark.parametrize("float_mm0", [False, True], ids=["all int8", "external weight float"])
def test_export_reads_external_weights_only_where_left_float(saved: Path, float_mm0: bool):
    mapped, whole = _engine(saved, False), _engine(saved, True)
    assert [t.name for t in external.external_tensors(mapped.model.graph_proto)] == ["W0"]
    built = {}
    for key, engine in (("mapped", mapped), ("whole", whole)):
        plan = Plan.preset(engine.info, "W8A8")
        if float_mm0:  # W0 stays float: read from its file into the export
            plan = plan.with_choices({"mm0": LayerChoice.of(None, None)})
        built[key] = drain(build(engine, plan))
    assert built["mapped"].model.SerializeToString() == built["whole"].model.SerializeToString()
    sizes = {k: {n: r.bytes_file for n, r in b.layers.items()} for k, b in built.items()}
    assert sizes["mapped"] == sizes["whole"]
    assert built["mapped"].accounted_bytes == built["whole"].accounted_bytes
    assert built["mapped"].base_bytes == built["whole"].base_bytes
    # the engine's model still holds W0 in its file
    assert external.external_tensors(mapped.model.graph_proto)


def test_external_model_exports_and_checks_without_reading_weights_in(saved: Path):
    engine = _engine(saved, False)
    out = saved.parent / "out" / "q.onnx"
    out.parent.mkdir()
    report = drain(
        export_and_check(engine, Plan.preset(engine.info, "W8A8"), out, latency_budget_s=0.0)
    )
    assert report.passed, report.failures
    assert report.latency is not None and report.latency.float_ms > 0  # the float model ran
    assert abs(report.file_size_error) <= 0.02
    assert external.external_tensors(engine.model.graph_proto)
    assert not external.external_tensors(onnx.load(str(out), load_external_data=False))


def test_runnable_is_the_file_unless_its_ir_version_was_lowered(saved: Path):
    model = load_model(saved)
    assert model.runnable() == str(saved)  # ONNX Runtime reads the external file itself
    assert external.external_tensors(model.graph_proto)
    # a file whose IR version this ONNX Runtime cannot read: the lowered copy, read in
    model.info = dataclasses.replace(model.info, ir_version=model.graph_proto.ir_version + 1)
    runnable = model.runnable()
    assert isinstance(runnable, onnx.ModelProto) and not external.external_tensors(runnable)


def test_a_bias_in_an_external_file_becomes_int32(tmp_path: Path):
    """x[N,2] -> MatMul(W[2,262144]) -> Add(b[262144]) -> y: W and b (1 MiB and more) stay in
    their file; W8A8 stores b as int32 on the Add (for QGemm), read from the file."""
    rng = np.random.default_rng(3)
    n = 1 << 18
    w = rng.standard_normal((2, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
         helper.make_node("Add", ["m", "b"], ["y"], name="add")],
        "external_bias",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    path = tmp_path / "bias.onnx"
    onnx.save_model(m, path, save_as_external_data=True, location="w.bin", size_threshold=0)
    engine = _engine(path, False)
    assert {t.name for t in external.external_tensors(engine.model.graph_proto)} == {"W", "b"}
    built = drain(build(engine, Plan.preset(engine.info, "W8A8")))
    (rec,) = built.layers.values()
    assert rec.bias is not None and rec.bias.bias == "b"
    assert rec.bias.max_error <= float(np.max(np.abs(b))) * 2**-20 + 1e-3
