"""The export's opset: the lowest the plan needs, the next ones when an upgrade changes the
outputs, and failures known before calibration reported before it (issue: export defaults)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from bitlens.cli import main
from bitlens.core.engine import Engine
from bitlens.core.errors import ExportError
from bitlens.core.export import opsets
from bitlens.core.export.exporter import ExportOptions, build, export, preflight
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests import builders
from tests.core.export_models import random_feeds


def _load(data: bytes | str) -> onnx.ModelProto:
    """What opsets._run is given: the source's bytes, or the converted model's file."""
    return onnx.load(data) if isinstance(data, str) else onnx.load_from_string(data)


def _engine() -> Engine:
    model = from_proto(builders.opset12_constant_weights())
    return Engine(model, random_feeds(model.info, 2), device="cpu")


def test_w8a8_on_an_opset12_constant_weight_model_works_by_default(tmp_path: Path) -> None:
    """The OCR case: opset 12, weights in Constant nodes, --preset W8A8, no --opset."""
    engine = _engine()
    plan = Plan.preset(engine.info, "W8A8")
    result = drain(export(engine, plan, tmp_path / "o.onnx"))
    assert (result.source_opset, result.opset) == (12, 13)
    # the source's size, measured before the upgrade, not the converted model's
    assert result.source_bytes == engine.model.proto.ByteSize()
    assert result.file_bytes == (tmp_path / "o.onnx").stat().st_size
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures


def test_next_candidate_is_tried_when_an_upgrade_changes_outputs(monkeypatch) -> None:
    real = opsets.convert
    tried: list[int] = []

    def convert(model, target, feeds, source=None):
        tried.append(target)
        if target == 13:  # as the version converter does for some operators
            raise ExportError("upgrading the model to opset 13 changed output 'y' on sample 0")
        return real(model, target, feeds, source)

    monkeypatch.setattr(opsets, "convert", convert)
    engine = _engine()
    prepared = preflight(engine, Plan.preset(engine.info, "W8A8"))
    assert tried == [13, 14] and prepared.opset == 14
    assert any("opset 13: upgrading" in n for n in prepared.notes)


def test_no_candidate_names_every_attempt(monkeypatch) -> None:
    def convert(model, target, feeds, source=None):
        raise ExportError(f"changed output at {target}")

    monkeypatch.setattr(opsets, "convert", convert)
    engine = _engine()
    with pytest.raises(ExportError, match=r"opset 13: changed output at 13.*opset 21"):
        preflight(engine, Plan.preset(engine.info, "W8A8"))


def test_candidates() -> None:
    assert opsets.candidates(17, 13) == [17]
    assert opsets.candidates(12, 13) == list(range(13, 22))
    assert opsets.candidates(17, 25) == [25]
    with pytest.raises(ExportError, match="leave --opset out"):
        opsets.candidates(12, 13, forced=12)


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--opset", "12"], "opset 12 is too old"), (["-o", "OUT.txt"], "must be an .onnx file")],
)
def test_cli_fails_before_calibrating(
    tmp_path: Path, monkeypatch, capsys, extra: list[str], message: str
) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(builders.opset12_constant_weights(), str(path))

    def calibrate(self, method="minmax"):
        raise AssertionError("calibration started before a knowable failure")
        yield

    monkeypatch.setattr(Engine, "calibrate", calibrate)
    out = str(tmp_path / "o.onnx")
    args = ["export", str(path), "--preset", "W8A8", "-o", out, "--samples", "2"]
    if extra[0] == "-o":
        args[args.index("-o") + 1] = str(tmp_path / extra[1])
    else:
        args += extra
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not np.any([p.suffix == ".onnx" and p.name != "m.onnx" for p in tmp_path.iterdir()])


def test_forced_opset_is_used(tmp_path: Path) -> None:
    engine = _engine()
    prepared = preflight(engine, Plan.preset(engine.info, "W8A8"), ExportOptions(opset=17))
    assert prepared.opset == 17 and prepared.converted is not None


def test_upgrade_is_what_the_version_converter_writes() -> None:
    """Converting from bytes gives the very model onnx.version_converter gives."""
    engine = _engine()
    prepared = preflight(engine, Plan.preset(engine.info, "W8A8"))
    src = engine.model.proto
    want = onnx.version_converter.convert_version(src, 13)
    want.ir_version = max(src.ir_version, opsets.ir_version_for(want))
    assert prepared.converted is not None
    assert prepared.converted.SerializeToString() == want.SerializeToString()


def test_source_is_run_once_for_every_candidate(monkeypatch) -> None:
    real_run = opsets._run
    runs: list[int] = []  # the opset of each model run

    def run(data, feeds):
        opset = opsets.default_opset(_load(data))
        runs.append(opset)
        if opset in (13, 14):
            raise RuntimeError(f"cannot run opset {opset}")  # the next candidate is tried
        return real_run(data, feeds)

    monkeypatch.setattr(opsets, "_run", run)
    engine = _engine()
    prepared = preflight(engine, Plan.preset(engine.info, "W8A8"))
    assert prepared.opset == 15
    assert sorted(runs) == [12, 13, 14, 15]  # the source (opset 12) once


def test_the_converted_model_waits_on_disk_and_each_export_parses_its_own() -> None:
    """The preflight's converted model is not held in memory through calibration and the
    check (issue 11: one more copy of every weight); each build gets an independent proto
    equal to the converter's, so exports from one preflight are the same bytes."""
    engine = _engine()
    plan = Plan.preset(engine.info, "W8A8")
    prepared = preflight(engine, plan)
    assert not any(isinstance(v, onnx.ModelProto) for v in vars(prepared).values())
    src = engine.model.proto
    want = onnx.version_converter.convert_version(src, 13)
    want.ir_version = max(src.ir_version, opsets.ir_version_for(want))
    first, second = prepared.converted, prepared.converted
    assert first is not None and second is not None and first is not second
    assert first.SerializeToString() == want.SerializeToString()
    first.graph.ClearField("node")  # a build edits its copy: the next one is unaffected
    assert prepared.converted.SerializeToString() == want.SerializeToString()
    drain(engine.calibrate())
    a = drain(build(engine, plan, prepared=prepared)).model.SerializeToString()
    b = drain(build(engine, plan, prepared=prepared)).model.SerializeToString()
    c = drain(build(engine, plan)).model.SerializeToString()  # its own preflight
    assert a == b == c


def test_the_upgrade_holds_one_model_and_one_session_at_a_time(monkeypatch) -> None:
    """The source runs before it is converted and its bytes are dropped before the converted
    model runs (both bytes, the converted proto and a session were held at once: 334 MiB
    above the interpreter for a 54 MB model)."""
    events: list[str] = []
    real_run, real_convert, real_drop = opsets._run, opsets._convert_bytes, opsets._Source.drop_data

    def run(data, feeds):
        events.append(f"run {opsets.default_opset(_load(data))}")
        return real_run(data, feeds)

    def convert(data, target):
        events.append("convert")
        return real_convert(data, target)

    def drop(self):
        events.append("drop")
        real_drop(self)

    monkeypatch.setattr(opsets, "_run", run)
    monkeypatch.setattr(opsets, "_convert_bytes", convert)
    monkeypatch.setattr(opsets._Source, "drop_data", drop)
    engine = _engine()
    prepared = preflight(engine, Plan.preset(engine.info, "W8A8"))
    assert prepared.opset == 13
    assert events == ["run 12", "convert", "drop", "run 13"]
