"""``bitlens inspect`` in a subprocess: the table, JSON, and one-line errors for bad files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import onnx
import pytest

from tests.builders import conv_net, lstm_in_if, opset12_constant_weights
from tests.cli_fork import run_bitlens

APP = Path(__file__).resolve().parents[2] / "app"


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m bitlens ARGS`` in a child process forked from a warm one (tests/cli_fork.py:
    the same result without a second of start-up per command)."""
    return run_bitlens(*args, timeout=timeout)


@pytest.mark.parametrize(
    ("builder", "layers"),
    [
        (conv_net, ["conv1", "conv2", "fc"]),
        (opset12_constant_weights, ["Conv_2", "Gemm_7"]),
        (lstm_in_if, ["else_lstm", "then_lstm"]),
    ],
)
def test_table(tmp_path: Path, builder, layers: list[str]) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(builder(), path)
    res = run_cli("inspect", str(path))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    header = next(line for line in lines if line.startswith("layer"))
    for col in ("op", "weight shape", "params", "now", "fp16", "int8 sym ch", "bin ch"):
        assert col in header
    rows = [line for line in lines if line.split() and line.split()[0] in layers]
    assert len(rows) == len(layers)
    assert all(" dB" in row for row in rows)
    total = next(line for line in lines if line.startswith("total"))
    assert f"{len(layers)} layers" in total
    assert next(line for line in lines if line.startswith("compression")).rstrip().endswith("x")
    # columns align: every table line has the same width up to its last cell
    assert len({len(line) for line in [header, *rows]}) == 1


def test_json(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(lstm_in_if(), path)
    res = run_cli("inspect", str(path), "--json", "--formats", "fp32", "int4 sym blk8")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["formats"] == ["fp32", "int4 sym blk8"]
    assert [layer["name"] for layer in data["layers"]] == ["else_lstm", "then_lstm"]
    then = data["layers"][1]
    assert then["graph_path"] == "choose/then_branch"
    assert then["weights"][0] == {
        "name": "then.W",
        "shape": [1, 24, 8],
        "dtype": "float32",
        "storage": "initializer",
        "graph_path": "choose/then_branch",
        "channel_axis": 1,
        "block_axis": 2,
    }
    assert then["formats"]["fp32"] == {"sqnr_db": "inf", "bytes": then["bytes"]}
    assert isinstance(then["formats"]["int4 sym blk8"]["sqnr_db"], float)
    assert data["totals"]["params"] == 2 * (24 * 8 + 24 * 6)
    assert data["totals"]["formats"]["fp32"]["compression"] == 1.0


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "missing": tmp_path / "missing.onnx",
        "directory": tmp_path,
        "empty": tmp_path / "empty.onnx",
        "truncated": tmp_path / "cut.onnx",
        "png": tmp_path / "image.png",
        "text": tmp_path / "notes.txt",
        "escape": tmp_path / "inner" / "escape.onnx",
    }
    files["empty"].write_bytes(b"")
    data = conv_net().SerializeToString()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    files["text"].write_text("hello\n")
    m = conv_net()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    t.external_data.add(key="location", value="../weights.bin")
    (tmp_path / "weights.bin").write_bytes(bytes(8 * 27 * 4))
    files["escape"].parent.mkdir()
    files["escape"].write_bytes(m.SerializeToString())
    return files


@pytest.mark.parametrize(
    "case", ["missing", "directory", "empty", "truncated", "png", "text", "escape"]
)
def test_bad_file_is_one_line(tmp_path: Path, case: str) -> None:
    path = _bad_files(tmp_path)[case]
    res = run_cli("inspect", str(path))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("bitlens inspect: error:") and str(path) in lines[0]
    assert res.stdout == ""


def test_bad_format_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(conv_net(), path)
    res = run_cli("inspect", str(path), "--formats", "int9 sym")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
