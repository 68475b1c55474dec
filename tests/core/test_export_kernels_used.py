"""Which kernel ran each layer (deployed.kernels_used) tries its rules one at a time and
names the same kernels as evaluating every rule for every layer (the rule that walks the
whole model for each node cost 37 s of a 102-conv detector's check)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.engine.graphs import iter_nodes
from bitlens.core.export import deployed
from bitlens.core.export.deployed import COMPUTE_OPS, fused_outputs, op_label, optimized_model
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.core.export_models import conv_net, random_feeds


def _every_rule(optimized: onnx.ModelProto, engine: Engine, records) -> dict[str, str]:
    """The rules as the check evaluated them before: all five lists for every layer."""
    out = {}
    nodes = [n for n in iter_nodes(optimized.graph) if n.op_type in COMPUTE_OPS]
    for name, rec in records.items():
        layer = engine.info.layer(name)
        signature = {w.name for w in layer.weights}
        signature |= {t.name for e in rec.weights for t in e.stored}
        inputs = set(layer.activations) | {q.output for q in rec.quantizers}
        candidates = (
            [n for n in nodes if signature & set(n.input)],
            [n for n in nodes if n.name == name or n.name.startswith(f"{name}_token")],
            [n for n in nodes if n.input and n.input[0] in inputs],
            [n for n in nodes if set(layer.outputs) & set(n.output)],
            [n for n in nodes if n.name in {f"{t}_nchwc" for t in fused_outputs(engine, layer)}],
        )
        found = next((c for c in candidates if c), [])
        out[name] = ", ".join(dict.fromkeys(op_label(n) for n in found)) or "?"
    return out


@pytest.mark.parametrize("preset", ["W8A8", "W4A16", "fp16"])
def test_kernels_used_equals_every_rule_evaluated(tmp_path: Path, preset: str) -> None:
    model = from_proto(conv_net(channels=8))
    data: Dataset = random_feeds(model.info, 2)
    engine = Engine(model, data, device="cpu")
    drain(engine.calibrate())
    plan = Plan.preset(engine.info, preset)
    result = drain(export(engine, plan, tmp_path / "o.onnx", ExportOptions()))
    optimized = optimized_model(str(result.path), ["CPUExecutionProvider"])
    got = deployed.kernels_used(optimized, engine, result.layers)
    assert got == _every_rule(optimized, engine, result.layers)
    assert set(got.values()) - {"?"}  # some layer was found
