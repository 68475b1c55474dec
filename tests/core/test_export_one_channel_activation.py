"""A per-channel activation format on a tensor with one channel exports.

basic-pitch (tf2onnx) reads mono audio: convs whose input has one channel. The search tries
"uint8 asym ch" activations; the export read that tensor's one scale, of shape [1, 1, 1, 1],
as a scalar and crashed with "only 0-dimensional arrays can be converted to Python scalars".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests import exported_shapes


@pytest.mark.parametrize("act", ["uint8 asym ch", "int8 sym ch"])
def test_per_channel_activation_on_one_channel_exports(tmp_path: Path, act: str) -> None:
    model = from_proto(exported_shapes.two_convs(1))  # conv1 reads one channel
    engine = Engine(model, Dataset.random(model.info, n=4, seed=0), device="cpu")
    w8 = parse_format("int8 sym ch")
    plan = Plan(model.info).with_choices(
        {"conv1": LayerChoice(w8, parse_format(act)), "conv2": LayerChoice(w8, parse_format(act))}
    )
    out = tmp_path / "o.onnx"
    result = drain(export(engine, plan, out, ExportOptions()))
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
    mono = next(q for q in result.layers["conv1"].quantizers)
    assert "1 channel scales" in mono.description
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(model.proto.SerializeToString()).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"x": x})[0]
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()  # 8-bit, not broken
