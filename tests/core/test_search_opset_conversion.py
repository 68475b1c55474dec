"""The search converts the model to a newer opset once per opset (core/search/filesize.py).

Every in-memory export the search builds for a plan needing a newer opset than the model's
(ONNX INT4 needs opset 21) ran the export's preflight, which converts the model and verifies
the conversion with two ONNX Runtime sessions: the export-cost measurements of each format,
each plan of the last choice run as deployed, and the plan the speed check times. On PP-OCRv5's recognizer (opset 11: per-channel
quantizers need 13) that was 33 conversions and a tenth of a search's CPU. The conversion depends on the opset only.
"""

from __future__ import annotations

from collections import Counter

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import opsets
from bitlens.core.model.loader import from_proto
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions, search
from tests.core.engine_models import small_cnn


def test_one_conversion_per_opset(monkeypatch) -> None:
    proto = small_cnn()
    proto.opset_import[0].version = 12  # per-channel quantizers need 13, ONNX INT4 21
    model = from_proto(proto)
    engine = Engine(model, Dataset.random(model.info, n=9, seed=3), device="cpu")
    drain(engine.calibrate("minmax"))
    targets: Counter = Counter()
    convert = opsets.convert

    def counted(model, target, *args, **kw):
        targets[target] += 1
        return convert(model, target, *args, **kw)

    monkeypatch.setattr(opsets, "convert", counted)
    opts = SearchOptions(
        Budget(size_ratio=0.9), front_probes=4, refine_evaluations=6, references=("W8A8",)
    )  # the speed check exports the plan too
    gen = search(engine, opts)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        result = stop.value
    assert result.best.exported_bytes is not None  # checked by real exports
    assert targets, "no plan needed a newer opset: the test does not test anything"
    assert max(targets.values()) == 1, f"conversions per opset: {dict(targets)}"
