"""Loading: clear errors for bad files, external data kept inside the model's folder."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import external_data_helper

from bitlens.core.errors import ModelLoadError
from bitlens.core.model.loader import load_model
from tests import builders
from tests.core.engine_models import small_cnn
from tests.core.test_cli_entry import run_cli


def _big_weight_model() -> onnx.ModelProto:
    m = small_cnn()
    for t in m.graph.initializer:
        if t.name == "W2":  # 4.6 KB: large enough to go external
            return m
    raise AssertionError


def _save_external(tmp_path, location: str = "weights.bin") -> tuple[str, onnx.ModelProto]:
    m = _big_weight_model()
    external_data_helper.convert_model_to_external_data(
        m, all_tensors_to_one_file=True, location=location, size_threshold=1024
    )
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, path)
    return str(path), m


def test_loads_external_data_from_its_folder(tmp_path) -> None:
    path, _ = _save_external(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    model = load_model(path)
    assert model.weight("W2").shape == (16, 8, 3, 3)
    assert np.array_equal(
        model.weight("W2"), onnx.numpy_helper.to_array(small_cnn().graph.initializer[2])
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written


def _rewrite_location(path: str, location: str) -> None:
    m = onnx.load(path, load_external_data=False)
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = location
    with open(path, "wb") as fh:
        fh.write(m.SerializeToString())


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_escaping_the_folder_is_refused(tmp_path, location: str) -> None:
    inner = tmp_path / "model"
    inner.mkdir()
    path, _ = _save_external(inner)
    (tmp_path / "outside.bin").write_bytes(b"\0" * 10000)
    _rewrite_location(path, location)
    with pytest.raises(ModelLoadError, match="refusing to read"):
        load_model(path)


def test_symlink_out_of_the_folder_is_refused(tmp_path) -> None:
    inner = tmp_path / "model"
    inner.mkdir()
    path, _ = _save_external(inner)
    (tmp_path / "secret.bin").write_bytes((inner / "weights.bin").read_bytes())
    (inner / "weights.bin").unlink()
    os.symlink(tmp_path / "secret.bin", inner / "weights.bin")
    with pytest.raises(ModelLoadError, match="escapes"):
        load_model(path)


def test_missing_and_short_external_data(tmp_path) -> None:
    path, _ = _save_external(tmp_path)
    data = (tmp_path / "weights.bin").read_bytes()
    (tmp_path / "weights.bin").write_bytes(data[:100])
    with pytest.raises(ModelLoadError, match="too short"):
        load_model(path)
    (tmp_path / "weights.bin").unlink()
    with pytest.raises(ModelLoadError, match=r"missing external data file 'weights\.bin'"):
        load_model(path)


def _bad_files(tmp_path):
    good = small_cnn().SerializeToString()
    files = {
        "empty.onnx": b"",
        "truncated.onnx": good[: len(good) // 2],
        "image.onnx": b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
        "text.onnx": b"this is not a model at all\n" * 20,
        "zip.onnx": b"PK\x03\x04" + b"\0" * 64,
        "json.onnx": json.dumps({"graph": "nope"}).encode(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return files


def test_bad_files_raise_model_load_error_naming_the_file(tmp_path) -> None:
    for name in _bad_files(tmp_path):
        with pytest.raises(ModelLoadError, match=name.split(".")[0]):
            load_model(tmp_path / name)
    with pytest.raises(ModelLoadError, match="no such file"):
        load_model(tmp_path / "none.onnx")
    with pytest.raises(ModelLoadError, match="folder"):
        load_model(tmp_path)


def test_inspect_prints_tables_for_the_issue_models(tmp_path) -> None:
    for name, proto in {
        "cnn": small_cnn(),
        "const12": builders.opset12_constant_weights(),
        "lstm_if": builders.lstm_in_if(),
    }.items():
        path = tmp_path / f"{name}.onnx"
        onnx.save(proto, path)
        res = run_cli("inspect", str(path))
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[-1].startswith("total") and "int4 sym ch dB/bytes" in lines[1]
        data = json.loads(run_cli("inspect", str(path), "--json").stdout)
        assert data["totals"]["params"] == sum(r["params"] for r in data["rows"])
        assert data["rows"][0]["cells"][0]["format"] == "fp16"
    assert "(in choose/then_branch)" in res.stdout and "LSTM" in res.stdout


def test_inspect_bad_files_one_line_no_traceback(tmp_path) -> None:
    for name in [*_bad_files(tmp_path), "missing.onnx"]:
        res = run_cli("inspect", str(tmp_path / name))
        assert res.returncode != 0
        assert "Traceback" not in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert name in res.stderr
