"""The graph ONNX Runtime runs for a small net's W8A8 export: what the fold tests
(Conv-Add, Conv-Mul, Identity) assert on, built one way for all of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.deployed import optimized_model
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.test_export_models import run


def w8a8_as_run(proto: onnx.ModelProto, shape: tuple[int, ...], tmp_path: Path) -> onnx.ModelProto:
    """``proto`` exported at W8A8 (four normal random feeds of ``shape`` as ``x``), its
    fidelity check passed, then optimized by ONNX Runtime's CPU provider."""
    model = from_proto(proto)
    rng = np.random.default_rng(5)
    feeds = tuple({"x": rng.normal(0, 1, shape).astype(np.float32)} for _ in range(4))
    engine = Engine(model, Dataset(feeds, source="random feeds"), device="cpu")
    result, report = run(engine, Plan.preset(engine.info, "W8A8"), tmp_path / "w8a8.onnx")
    assert report.passed, report.failures
    return optimized_model(str(result.path), ["CPUExecutionProvider"])
