"""As-deployed evaluation layer by layer: the deployed model's values at each layer output
against the simulation's (bitlens.core.export.layerdiff)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bitlens.cli import main
from bitlens.core.engine import Engine
from bitlens.core.export.asdeployed import DeployedRunner
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run
from tests.core.test_targets import silu_net


@pytest.fixture(scope="module")
def engine() -> Engine:
    model = from_proto(silu_net())
    eng = Engine(model, random_feeds(model.info, 4), device="cpu")
    drain(eng.calibrate("minmax"))
    return eng


def test_every_layer_output_is_compared_with_the_fused_kernels_codes(
    engine: Engine, tmp_path: Path
) -> None:
    plan = Plan.preset(engine.info, "W8A8")
    runner = DeployedRunner(engine)
    try:
        rep = drain(runner.run(plan))
    finally:
        runner.close()
    assert rep.layers_verified  # ORT's optimized graph re-run as saved = the default session
    layers = {la.layer: la for la in rep.layers}
    assert list(layers) == ["conv0", "conv1", "conv2", "conv3", "fc"]
    # QLinearConv writes each conv's requantized output itself (channels-last): compared in
    # codes, never "not observable"; each kernel is within a step, a few steps add up
    for name in ("conv0", "conv1", "conv2", "conv3"):
        assert layers[name].kind == "codes", layers[name]
        assert layers[name].max_lsb is not None and layers[name].max_lsb <= 4
    assert layers["fc"].kind == "float"
    # Independent check: y is DequantizeLinear(conv3's codes), so conv3's difference is the
    # difference of y between a fresh default session of the export and the simulation.
    result, _ = run(engine, plan, tmp_path / "fresh.onnx")
    fresh = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    sim = engine.run_outputs(plan)["y"]
    dep = [fresh.run(["y"], engine.data.samples[i])[0] for i in engine.data.evaluation]
    diff = np.abs(np.concatenate([d.ravel() for d in dep]) - np.concatenate(
        [s.ravel() for s in sim]))  # fmt: skip
    assert layers["conv3"].max_abs == pytest.approx(float(diff.max()), rel=1e-6, abs=1e-12)
    assert layers["conv3"].mismatch == pytest.approx(float(np.mean(diff > 0)))
    out = {o.name: o for o in rep.outputs}
    assert out["y"].max_abs_difference == pytest.approx(float(diff.max()), rel=1e-6, abs=1e-12)


def test_cli_eval_deployed_prints_and_writes_the_layers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "silu.onnx"
    onnx.save(silu_net(), str(src))
    args = ["eval", str(src), "--preset", "W8A8", "--samples", "4", "--device", "cpu",
            "--deployed"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["deployed_layers_verified"] is True
    rows = {r["layer"]: r for r in data["deployed_layers"]}
    assert set(rows) == {"conv0", "conv1", "conv2", "conv3", "fc"}
    assert rows["conv0"]["kind"] == "codes" and rows["conv0"]["max_lsb"] <= 1
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "per layer output, deployed vs simulated" in text
    assert "  conv3 (conv3.c): " in text
