"""Models saved with an IR version newer than ONNX Runtime reads (issue 9, item 1).

``onnx`` 1.23 saves IR 14; ONNX Runtime 1.31 reads IR 13 at most. The opsets are
what the runtime must implement, so Bitlens runs such a model at a lower IR
version in memory, exports at a version ORT loads, and names both versions
when the opsets really need the newer one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bitlens.cli import main
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import EngineError
from bitlens.core.model import irversion
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from tests.builders import conv_net, random_feeds


def _ort_fails(m: onnx.ModelProto) -> bool:
    try:
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:
        return True
    return False


@pytest.fixture
def new_ir(tmp_path: Path) -> Path:
    """conv_net (opset 17: IR 8 suffices) saved as IR ``max ORT + 1``."""
    m = conv_net()
    m.ir_version = irversion.ort_max_ir_version() + 1
    assert _ort_fails(m)  # the failure the user sees without Bitlens
    path = tmp_path / "new_ir.onnx"
    onnx.save(m, path)
    return path


def test_max_ir_version_is_what_ort_loads() -> None:
    top = irversion.ort_max_ir_version()
    m = conv_net()
    m.ir_version = top
    assert not _ort_fails(m)


def test_runs_in_memory_at_the_version_ort_reads(new_ir: Path) -> None:
    before = new_ir.read_bytes()
    model = load_model(new_ir)
    top = irversion.ort_max_ir_version()
    assert model.info.ir_version == top + 1  # the file's version is what inspect shows
    assert model.proto.ir_version == top
    (note,) = model.info.notes
    assert f"IR version {top + 1}" in note and f"as IR {top} in memory" in note
    feeds = random_feeds(conv_net())
    engine = Engine(model, Dataset.from_arrays(model.info, feeds), device="cpu")
    ref = ort.InferenceSession(conv_net().SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = engine.run_outputs(Plan(model.info)).values()
    np.testing.assert_allclose(np.concatenate(got), ref.run(None, feeds)[0], rtol=1e-5, atol=1e-6)
    assert new_ir.read_bytes() == before


def test_export_loads_in_ort(new_ir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "q.onnx"
    rc = main(["export", str(new_ir), "--preset", "W8A8", "-o", str(out), "--samples", "4",
               "--device", "cpu", "--json"])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    json.loads(captured.out)  # the note went to stderr
    assert "runs it as IR" in captured.err
    exported = onnx.load(out)
    assert exported.ir_version <= irversion.ort_max_ir_version()
    assert not _ort_fails(exported)


def test_says_so_when_the_opsets_need_the_newer_version(
    new_ir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """An ORT that reads IR 9 cannot run opset 21 (IR 10): one line naming both versions."""
    m = onnx.load(new_ir)
    m.opset_import[0].version = 21
    m.ir_version = 11
    onnx.save(m, new_ir)
    monkeypatch.setattr(irversion, "ort_max_ir_version", lambda: 9)
    model = load_model(new_ir)
    assert model.proto.ir_version == 11  # left as it is
    assert "need IR 10" in model.info.notes[0] and "reads IR 9 at most" in model.info.notes[0]
    engine = Engine(model, Dataset.random(model.info, n=2), device="cpu")
    with pytest.raises(EngineError, match=r"IR version 11 .*reads IR 9 at most"):
        engine.run_outputs(Plan(model.info))
    rc = main(["eval", str(new_ir), "--preset", "W8A8", "--samples", "2", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("bitlens eval: error:") and "reads IR 9 at most" in err[-1]
