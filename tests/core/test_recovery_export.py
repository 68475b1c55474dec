"""Every recovery method exports exactly what the engine evaluated (fidelity check passes,
each recovered weight rebuilt from the file bit for bit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.core.export_models import conv_net, random_feeds, transformer_block


@pytest.fixture(scope="module")
def engines() -> dict[str, Engine]:
    out = {}
    for key, proto in (("cnn", conv_net(channels=8)), ("transformer", transformer_block(16, 32))):
        model = from_proto(proto)
        out[key] = Engine(model, random_feeds(model.info, 4), device="cpu")
    return out


CASES = [
    ("cnn", "int4 sym ch", "uint8 asym", "gptq", {}),
    ("cnn", "int3 asym blk8", None, "gptq", {}),
    ("cnn", "int8 sym ch", "uint8 asym", "gptq", {}),  # integer kernels, int32 bias
    ("cnn", "int4 sym ch", None, "bias_correction", {}),
    ("cnn", "int8 sym ch", "uint8 asym", "bias_correction", {}),  # corrected int32 bias
    ("cnn", "int4 sym ch", "uint8 asym", "awq", {}),
    ("cnn", "int4 sym ch", None, "awq", {"weights": "qdq"}),  # Mul after DequantizeLinear
    ("cnn", "int4 sym ch", None, "clip_search", {"weights": "qdq"}),
    ("transformer", "int4 sym ch", None, "gptq", {}),
    ("transformer", "int4 sym ch", None, "bias_correction", {}),  # MatMul + Add biases
    ("transformer", "int8 sym ch", "uint8 asym", "bias_correction", {}),  # as int32
    ("transformer", "int4 asym blk8", None, "awq", {}),
    ("transformer", "int3 sym ch", "int8 sym", "clip_search", {}),
]


@pytest.mark.parametrize(("key", "wfmt", "afmt", "method", "options"), CASES)
def test_recovered_plan_exports_exactly(
    engines: dict[str, Engine], tmp_path: Path, key: str, wfmt: str, afmt: str | None,
    method: str, options: dict,
) -> None:
    engine = engines[key]
    info = engine.info
    choices = {}
    for layer in info.layers:
        ok = method != "bias_correction" or layer.biases
        choices[layer.name] = LayerChoice.of(wfmt, afmt, False, method if ok else None)
    plan = Plan(info, choices)
    result = drain(export(engine, plan, tmp_path / "m.onnx", ExportOptions(**options)))
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
    checks = [wc for lc in report.layers for wc in lc.weights]
    assert checks and all(wc.exact for wc in checks)
    if method == "awq":  # a layer took scales: its decode ends in the exact multiply
        recs = [engine.recovery.result(la, plan[la.name].weight, plan[la.name].recovery)
                for la in info.layers if plan[la.name].recovery]  # fmt: skip
        assert any(r.input_scale is not None for r in recs)
        nodes = onnx.load(str(result.path)).graph.node
        assert any(n.op_type == "Mul" and "awq_inv_scale" in n.input[1] for n in nodes)
    if method == "bias_correction":  # the file holds the corrected float biases
        inits = {t.name: t for t in onnx.load(str(result.path)).graph.initializer}
        layer = next(la for la in info.layers if la.biases)
        rec = engine.recovery.result(layer, plan[layer.name].weight, plan[layer.name].recovery)
        name = layer.biases[0].name
        if name in inits:
            np.testing.assert_array_equal(numpy_helper.to_array(inits[name]), rec.bias)
        assert not np.array_equal(rec.bias, engine.model.weight(name))


def test_cli_plan_recovery_eval_json_and_export(tmp_path: Path) -> None:
    """``plan --recovery``, then ``eval --json`` (compute and the plan) and ``export``."""
    import json

    from tests.core.test_cli_inspect import run_cli

    model = tmp_path / "m.onnx"
    onnx.save(conv_net(channels=8), model)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((8, 3, 16, 16)).astype(np.float32))
    plan = tmp_path / "p.json"
    res = run_cli("plan", str(model), "--preset", "W4A16", "--recovery", "gptq", "-o", str(plan))
    assert res.returncode == 0, res.stderr
    layers = json.loads(plan.read_text())["layers"]
    assert {v.get("recovery") for v in layers.values()} == {"gptq"}
    res = run_cli("eval", str(model), "--plan", str(plan), "--data", str(data), "--json")
    assert res.returncode == 0, res.stderr
    compute = json.loads(res.stdout)["compute"]
    assert compute["total_macs"] > 0 and compute["total_bops"] == compute["total_macs"] * 4 * 16
    res = run_cli("export", str(model), "--plan", str(plan), "--data", str(data),
                  "-o", str(tmp_path / "q.onnx"))  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "fidelity check passed" in res.stdout and "BOPs" in res.stdout
