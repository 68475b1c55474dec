"""The exported file run as written (no graph optimization) against the engine's output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from bitlens.core.engine import Engine
from bitlens.core.plan import Plan


def assert_file_is_engine(engine: Engine, plan: Plan, path: Path, output: str = "y") -> None:
    """Bit for bit on every evaluation feed: ORT_DISABLE_ALL runs the file's own arithmetic,
    which the engine's simulation graph makes too."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    got = engine.run_outputs(plan)[output]
    for i, y in zip(engine.data.evaluation, got, strict=True):
        np.testing.assert_array_equal(sess.run([output], engine.data.samples[i])[0], y)
