"""The bundled samples load, match their recorded accuracy and degrade sensibly with bits."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import BitlensError
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from bitlens.core.samples import (
    DEFAULT_SAMPLE,
    accuracy,
    get_sample,
    list_samples,
    load_sample_data,
)

NAMES = ["digits_cnn", "speech_kws", "text_transformer"]


def test_three_samples_listed_default_first() -> None:
    samples = list_samples()
    assert [s.name for s in samples] == NAMES and samples[0].name == DEFAULT_SAMPLE
    assert {s.domain for s in samples} == {"image", "speech", "text"}
    with pytest.raises(BitlensError, match="digits_cnn"):
        get_sample("nope")


@pytest.mark.parametrize("name", NAMES)
def test_recorded_float_accuracy_reproduces_in_plain_ort(name: str) -> None:
    sample = get_sample(name)
    inputs, labels = load_sample_data(sample)
    assert sample.model_path.stat().st_size + sample.data_path.stat().st_size < 3_000_000
    sess = ort.InferenceSession(str(sample.model_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [sample.meta["input"]] == list(inputs)
    logits = sess.run(None, inputs)[0]
    acc = accuracy(logits, labels)
    assert acc == pytest.approx(sample.meta["float_accuracy"], abs=1e-9)
    assert acc > 0.9 and len(labels) == sample.meta["eval_samples"]


@pytest.mark.parametrize("name", NAMES)
def test_accuracy_vs_bits(name: str) -> None:
    """int8 stays within a point of float; binary is clearly worse; bits order the damage."""
    sample = get_sample(name)
    model = load_model(sample.model_path)
    inputs, labels = load_sample_data(sample)
    engine = Engine(model, Dataset.from_arrays(model.info, inputs, labels), device="cpu")
    acc = {}
    for preset in ("W8A8", "W4A16", "binary"):
        metric = engine.evaluate(Plan.preset(model.info, preset)).task_metric
        acc[preset] = metric["accuracy"]
        float_acc = metric["accuracy_float"]
    assert abs(acc["W8A8"] - float_acc) <= 0.01
    assert acc["binary"] <= float_acc - 0.05
    assert acc["binary"] < acc["W4A16"]
    assert np.isfinite(list(acc.values())).all()
