"""The plan search's "done when" on the bundled samples (issue 13), as far as it holds.

At the size of a uniform W8A8 export (the real file, exported in memory), the seeded search
must find a plan whose exported file fits and whose output error is lower than W8A8's; at
half that size its accuracy must stay within a point of float's on every sample. The
half-size plans need the search's recovery candidates (GPTQ on the speech model's conv) and
its k-means codebooks (the text transformer's layers at 2 and 3 bits): with the plain
formats alone the speech model kept 94.4% against float's 96.8% and the text transformer
93.3% against 98%.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest

from bitlens.core import samples
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from bitlens.core.search import (
    Budget,
    SearchOptions,
    SearchResult,
    exported_size,
    output_error,
    search,
)
from bitlens.core.usermetric import concat_outputs, default_metric, reference_outputs


@functools.cache  # one engine per sample: its calibration and recovery results serve both budgets
def _engine(name: str) -> Engine:
    sample = samples.get_sample(name)
    model = load_model(sample.model_path)
    arrays, labels = samples.load_sample_data(sample)
    engine = Engine(
        model, Dataset.from_arrays(model.info, arrays, labels, source=name), device="cpu"
    )
    for _ in engine.calibrate("minmax"):
        pass
    return engine


# The text transformer's W8A8 runs at 0.77x of its float time (ONNX Runtime CPU, medians of
# interleaved runs), so by default (core/search/latency.py) the search keeps its layers on
# integer kernels with 8-bit activations, where its plan only matches W8A8 (0.00757 against
# 0.00753 on every row); its error win is the weights-only plan's, which runs at the float
# model's speed: what --max-latency none returns. tests/core/test_search_latency.py checks
# the default's speed.
SPEED = {"text_transformer": None}


def _search(engine: Engine, max_bytes: int, name: str) -> SearchResult:
    options = SearchOptions(Budget(max_bytes=max_bytes), seed=0)
    if name in SPEED:
        options = replace(options, max_latency=SPEED[name])
    gen = search(engine, options)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def _full(engine: Engine, plan: Plan) -> tuple[float, float]:
    """Output error and accuracy of ``plan`` on every evaluation row."""
    ref, labels = reference_outputs(engine), engine.data.eval_labels
    got = concat_outputs(engine.run_outputs(plan))
    return output_error(ref, got), default_metric(ref, labels)(got, ref, labels)  # type: ignore[misc]


def _ref(result: SearchResult, label: str):
    return next(p for p in result.references if p.label == label)


# the plan's error against W8A8's, on every evaluation row. The text transformer's W8A8 error
# is mostly its activations', spread over all 13 layers: with 8-bit activations (one wide)
# nothing beat W8A8 on the held-back rows and the search returned W8A8 itself; it then
# searches weights-only (core/search/runner.py), whose plan of that size has 0.6 of W8A8's
# error (on 1500 sentences from the sample's generator no row of the sample holds: 0.0057
# against 0.0089).
@pytest.mark.parametrize("name", ["digits_cnn", "speech_kws", "text_transformer"])
def test_search_beats_w8a8_at_its_size(name: str) -> None:
    engine = _engine(name)
    w8a8_bytes = exported_size(engine, Plan.preset(engine.info, "W8A8"))
    result = _search(engine, w8a8_bytes, name)
    best, w8a8 = result.best, _ref(result, "W8A8")
    assert best.exported_bytes is not None and best.exported_bytes <= w8a8_bytes
    # the real file of the chosen plan, measured independently of the search's accounting
    assert exported_size(engine, best.plan) == best.exported_bytes
    # on every evaluation row (the search held a third back to check its choice)
    (err, met), (w8_err, w8_met) = _full(engine, best.plan), _full(engine, w8a8.plan)
    assert err < 0.75 * w8_err, (err, w8_err)
    assert met >= w8_met


# Evaluation sets: digits 180 samples, speech 125, text 150; one point of accuracy is 1.8,
# 1.25 and 1.5 samples, so on speech and text the plan may lose one sample against float.
@pytest.mark.parametrize("name", ["digits_cnn", "speech_kws", "text_transformer"])
def test_half_the_w8a8_size_keeps_float_accuracy(name: str) -> None:
    engine = _engine(name)
    half = exported_size(engine, Plan.preset(engine.info, "W8A8")) // 2
    result = _search(engine, half, name)
    best = result.best
    assert best.exported_bytes is not None and best.exported_bytes <= half
    met, flt = _full(engine, best.plan)[1], _full(engine, Plan(engine.info))[1]
    assert met >= flt - 0.01, (met, flt)
