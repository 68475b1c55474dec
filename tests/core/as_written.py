"""The exported file run as written (no graph optimization) against the engine's output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bitlens.core.engine import Engine, nchwc
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


@pytest.fixture(scope="module")
def plain_convs():
    """The module's engines run their convs as the plain ONNX Conv, for tests that compare
    the engine bit for bit with ORT_DISABLE_ALL runs (which run that Conv): on ONNX
    Runtime's NCHWc kernels (engine/nchwc.py) they agree within float reassociation
    (tests/core/test_engine_nchwc.py). Use: ``pytestmark = pytest.mark.usefixtures(
    "plain_convs")`` and import it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nchwc, "ENABLED", False)
        yield
