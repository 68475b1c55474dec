"""The export's opset conversion is made once per engine, opset and feeds
(core/export/conversions.py).

The window's Find Plan converted the model for its size checks, and the export that
followed converted it again in its preflight: onnx's C++ version converter holds the
interpreter lock 120-150 ms per call on PP-OCRv4 rec, the window's longest stall of the
export. The file written must not change.
"""

from __future__ import annotations

from pathlib import Path

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import opsets
from bitlens.core.export.fidelity import export_and_check
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search.filesize import FileSizes
from tests.core.engine_models import small_cnn


def _engine() -> Engine:
    proto = small_cnn()
    proto.opset_import[0].version = 12  # per-channel quantizers need 13: the model is converted
    model = from_proto(proto)
    engine = Engine(model, Dataset.random(model.info, n=6, seed=3), device="cpu")
    drain(engine.calibrate("minmax"))
    return engine


def test_the_searchs_conversion_is_the_exports(monkeypatch, tmp_path: Path) -> None:
    converted: list[int] = []
    convert_bytes = opsets._convert_bytes

    def counted(data: bytes, target: int) -> bytes:
        converted.append(target)
        return convert_bytes(data, target)

    monkeypatch.setattr(opsets, "_convert_bytes", counted)
    engine = _engine()
    plan = Plan.preset(engine.info, "W8A8")
    FileSizes(engine).export(plan, keep_file=True)  # the search's real-size check
    assert converted == [13]
    report = drain(export_and_check(engine, plan, tmp_path / "a.onnx", latency_budget_s=0.0))
    assert report.passed, report.failures
    assert converted == [13], "the export converted the model again"
    # the same file as an export that converts the model itself, on an engine of its own
    fresh = _engine()
    drain(export_and_check(fresh, Plan.preset(fresh.info, "W8A8"), tmp_path / "b.onnx",
                           latency_budget_s=0.0))  # fmt: skip
    assert converted == [13, 13]
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    # other feeds verify the conversion anew (the key holds the feeds)
    engine.data = Dataset.random(engine.info, n=6, seed=4)
    FileSizes(engine).prepared(plan)
    assert converted == [13, 13, 13]
