"""Bias correction on layers without a bias: the engine gives each one (Conv B, Gemm C,
an Add after a MatMul), its output equals plain ONNX Runtime on the model rebuilt by hand
with those biases and the rounded weights, it measurably helps at int3, and the export
writes it exactly (fidelity check)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery import Recovery
from bitlens.core.results import drain
from tests import builders
from tests.core.as_written import assert_file_is_engine

LAYERS = ("conv", "fc", "head")


@pytest.fixture(scope="module")
def engine() -> Engine:
    model = from_proto(builders.unbiased_layers())
    rng = np.random.default_rng(5)
    feeds = tuple({"x": rng.normal(0.3, 1.0, (4, 4, 6, 6)).astype(np.float32)} for _ in range(8))
    return Engine(model, Dataset(feeds, source="test"), device="cpu")


def _plan(engine: Engine, fmt: str, method: str | None, act: str | None = None) -> Plan:
    return Plan(engine.info, {n: LayerChoice.of(fmt, act, False, method) for n in LAYERS})


def test_engine_output_is_the_model_with_the_created_biases(engine: Engine) -> None:
    plan = _plan(engine, "int3 sym ch", "bias_correction")
    recs = {n: engine.recovery.result(engine.info.layer(n), plan[n].weight, Recovery.BIAS)
            for n in LAYERS}  # fmt: skip
    assert all(r.bias is not None and np.any(r.bias != 0) for r in recs.values())
    by_hand = builders.unbiased_layers(
        {f"{n}.w": r.weight for n, r in recs.items()}, {n: r.bias for n, r in recs.items()}
    )
    sess = ort.InferenceSession(by_hand.SerializeToString(), providers=["CPUExecutionProvider"])
    got = engine.run_outputs(plan)["y"]
    for i, y in zip(engine.data.evaluation, got, strict=True):
        want = sess.run(None, engine.data.samples[i])[0]
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)  # float reordering only


def test_created_bias_helps_at_int3(engine: Engine) -> None:
    plain = engine.evaluate(_plan(engine, "int3 sym ch", None))
    fixed = engine.evaluate(_plan(engine, "int3 sym ch", "bias_correction"))
    for n in LAYERS:  # each layer's own error (its input float) drops
        assert fixed.layers[n].local.sqnr_db > plain.layers[n].local.sqnr_db, n
    assert fixed.outputs["y"].error.sqnr_db > plain.outputs["y"].error.sqnr_db + 0.5


@pytest.mark.parametrize(("fmt", "act", "options"), [
    ("int3 sym ch", None, {}),
    ("int4 sym ch", None, {"weights": "qdq"}),
    ("int8 sym ch", "uint8 asym", {}),  # integer kernels, then the float bias
])  # fmt: skip
def test_created_bias_exports_exactly(
    engine: Engine, tmp_path: Path, fmt: str, act: str | None, options: dict
) -> None:
    plan = _plan(engine, fmt, "bias_correction", act)
    if options:  # ORT runs a DequantizeLinear -> MatMul as MatMulNBits (int8 activations
        # inside, documented by the fidelity check, with or without a bias): Conv and Gemm
        plan = plan.with_choices({"head": LayerChoice.of(None)})
    result = drain(export(engine, plan, tmp_path / "m.onnx", ExportOptions(**options)))
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)
    assert all(wc.exact for lc in report.layers for wc in lc.weights)
    g = onnx.load(str(result.path)).graph
    ops = {n.name: n for n in g.node}
    assert len(ops["conv"].input) == 3 and len(ops["fc"].input) == 3
    assert options or any(n.op_type == "Add" and n.output[0] == "y" for n in g.node)  # after MatMul


def test_created_bias_of_an_integer_kernel_is_simulated_as_stored(
    engine: Engine, tmp_path: Path
) -> None:
    """The export stores a created Conv/Gemm bias as int32 at s_x * s_w like any bias of an
    integer kernel; the engine rounds it the same way, so the file run as written equals
    the engine's output bit for bit (captcha-whisperer's CRNN: 0.51 apart before)."""
    plan = _plan(engine, "int8 sym ch", "bias_correction", "uint8 asym")
    rounded = engine._rounded(plan)
    assert {"conv", "fc"} <= set(rounded)  # their created biases, on the int32 grid
    result = drain(export(engine, plan, tmp_path / "m.onnx", ExportOptions()))
    assert result.layers["conv"].bias is not None and result.layers["fc"].bias is not None
    assert_file_is_engine(engine, plan, result.path)  # the file is the simulation
