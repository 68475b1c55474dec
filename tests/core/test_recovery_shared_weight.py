"""Recovery methods on a weight several layers read: every reader simulates the one tensor
the export stores.

GPTQ, AWQ, the clip search and SmoothQuant fit a weight to its reader's inputs. A Siamese
network's branches read the same weights on different inputs (CapSpot's VGG16 matcher):
recovered per reader, the engine fed the last reader's weight while the export wrote the
first's, and ``bitlens export --plan`` of a searched plan failed its fidelity check (max
|Δ| 0.0049 on the matcher's score). The file stores the weight for its first reader
(core/shared_weights.stored_readers), so the recovery is fitted to that reader's inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery import parse_recovery
from tests.core.as_written import plain_convs  # noqa: F401 (a fixture)
from tests.core.test_cli_shared_notes import siamese
from tests.core.test_export_models import run

# bit for bit against ORT_DISABLE_ALL's plain Conv (as_written.plain_convs)
pytestmark = pytest.mark.usefixtures("plain_convs")


@pytest.mark.parametrize(
    ("weight", "method", "activation"),
    [
        ("int4 sym ch", "gptq", None),
        ("int8 sym ch", "awq", None),
        ("int4 sym ch", "clip_search", None),
        ("int8 sym ch", "smoothquant", "uint8 asym"),
    ],
)
def test_export_of_a_recovered_shared_weight_is_what_was_simulated(
    tmp_path: Path, weight: str, method: str, activation: str | None
) -> None:
    model = from_proto(siamese(2))
    engine = Engine(model, Dataset.random(model.info, n=8, seed=0), device="cpu")
    base = LayerChoice.of(weight, activation)
    choice = LayerChoice(base.weight, base.activation, recovery=parse_recovery(method))
    plan = Plan(engine.info, dict.fromkeys(engine.info.layer_names, choice))
    result, report = run(engine, plan, tmp_path / "o.onnx")
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)
    # plain ONNX Runtime on the file, unoptimized, computes what the engine simulated
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(str(result.path), so, providers=["CPUExecutionProvider"])
    simulated = engine.run_outputs(plan)["y"]
    for i, sim in zip(engine.data.evaluation, simulated, strict=True):
        np.testing.assert_array_equal(plain.run(["y"], engine.data.samples[i])[0], sim)
