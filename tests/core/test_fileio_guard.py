"""Outputs never destroy inputs or foreign files; written files get honest modes; no litter."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from bitlens.cli import main
from bitlens.core.errors import BitlensError
from bitlens.core.fileio import (
    atomic_write_text,
    check_output,
    clean_stale,
    current_umask,
    staging_path,
)
from tests.builders import mlp


@pytest.fixture
def m(tmp_path: Path) -> Path:
    p = tmp_path / "m.onnx"
    onnx.save(mlp(), p)
    return p


def _run(args: list[str], capsys) -> tuple[int, str]:
    rc = main(args)
    return rc, capsys.readouterr().err


def test_plan_output_onto_its_model_is_refused(m: Path, capsys) -> None:
    before = m.read_bytes()
    rc, err = _run(["plan", str(m), "--preset", "W8A8", "-o", str(m)], capsys)
    assert rc == 2 and "input of this run" in err and len(err.strip().splitlines()) == 1
    assert m.read_bytes() == before


def test_export_report_onto_the_model_is_refused(m: Path, tmp_path: Path, capsys) -> None:
    before = m.read_bytes()
    out = tmp_path / "out.onnx"
    rc, err = _run(
        ["export", str(m), "--preset", "W8A8", "-o", str(out), "--report", str(m)], capsys
    )
    assert rc == 2 and "input of this run" in err
    assert m.read_bytes() == before and not out.exists()


def test_export_report_onto_the_export_is_refused(m: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.onnx"
    rc, err = _run(
        ["export", str(m), "--preset", "W8A8", "-o", str(out), "--report", str(out)], capsys
    )
    assert rc == 2 and "input of this run" in err and not out.exists()


def test_hard_link_and_symlink_to_the_model_are_the_model(m: Path, tmp_path: Path, capsys) -> None:
    link = tmp_path / "hard.json"
    os.link(m, link)
    sym = tmp_path / "sym.json"
    sym.symlink_to(m)
    before = m.read_bytes()
    for target in (link, sym):
        rc, err = _run(["plan", str(m), "--preset", "W8A8", "-o", str(target)], capsys)
        assert rc == 2 and "input of this run" in err
    assert m.read_bytes() == before


def test_foreign_files_are_not_replaced(m: Path, tmp_path: Path, capsys) -> None:
    photo = tmp_path / "holiday.json"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    rc, err = _run(["plan", str(m), "--preset", "W8A8", "-o", str(photo)], capsys)
    assert rc == 2 and "not JSON" in err
    notes = tmp_path / "notes.onnx"
    notes.write_text("my notes\n")
    rc, err = _run(["export", str(m), "--preset", "W8A8", "-o", str(notes)], capsys)
    assert rc == 2 and "not an ONNX model" in err
    assert notes.read_text() == "my notes\n"
    # A model is replaced by an export, a JSON plan by a plan.
    old_plan = tmp_path / "old.json"
    old_plan.write_text("{}\n")
    assert check_output(old_plan, "json", [m]) == old_plan
    other = tmp_path / "other.onnx"
    onnx.save(mlp(), other)
    assert check_output(other, "onnx", [m]) == other


def test_directory_and_fifo_targets_are_refused(m: Path, tmp_path: Path, capsys) -> None:
    d = tmp_path / "d.onnx"
    d.mkdir()
    rc, err = _run(["export", str(m), "--preset", "W8A8", "-o", str(d)], capsys)
    assert rc == 2 and "is a directory" in err
    fifo = tmp_path / "f.json"
    os.mkfifo(fifo)
    with pytest.raises(BitlensError, match="not a regular file"):
        check_output(fifo, "json")


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path: Path) -> None:
    new = tmp_path / "new.json"
    atomic_write_text(new, "{}")
    assert stat.S_IMODE(new.stat().st_mode) == 0o666 & ~current_umask()
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    shared.chmod(0o644)
    atomic_write_text(shared, "[]")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    private = tmp_path / "private.json"
    private.write_text("{}")
    private.chmod(0o600)
    atomic_write_text(private, "[]")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_umask_is_read_not_guessed(tmp_path: Path) -> None:
    code = (
        "import os; os.umask(0o027); from bitlens.core.fileio import atomic_write_text, "
        f"current_umask; atomic_write_text({str(tmp_path / 'u.json')!r}, '1'); "
        "print(oct(current_umask()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0o27"
    assert stat.S_IMODE((tmp_path / "u.json").stat().st_mode) == 0o640


def test_litter_of_a_dead_process_is_cleaned_and_nothing_else(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    stale_tmp = tmp_path / f"plan.json.bitlens-{pid}-abcd1234.tmp"
    stale_stage = tmp_path / f"out.bitlens-staging-{pid}.onnx"
    mine = staging_path(tmp_path / "mine.onnx")  # this process is alive
    user = tmp_path / "out.bitlens-staging-notes.onnx"  # not the exact pattern
    other = tmp_path / f".plan.json.{pid}.tmp"
    for f in (stale_tmp, stale_stage, mine, user, other):
        f.write_bytes(b"x")
    atomic_write_text(tmp_path / "plan.json", "{}")  # any write cleans the folder
    assert not stale_tmp.exists() and not stale_stage.exists()
    assert mine.exists() and user.exists() and other.exists()
    assert clean_stale(tmp_path) == []
    assert (
        sorted(
            p.name for p in tmp_path.iterdir() if ".bitlens-" in p.name and p.name.endswith(".tmp")
        )
        == []
    )


def test_a_staged_export_takes_the_mode_of_the_file_it_replaces(tmp_path: Path) -> None:
    from bitlens.core.fileio import replace_into

    target = tmp_path / "out.onnx"
    target.write_bytes(b"old")
    target.chmod(0o644)
    staged = staging_path(target)
    atomic_write_text(staged, "new")
    staged.chmod(0o600)
    replace_into(staged, target)
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert not staged.exists()


def test_report_onto_the_evaluation_data_is_refused(m: Path, tmp_path: Path, capsys) -> None:
    import numpy as np

    data = tmp_path / "eval.npz"
    np.savez(data, x=np.zeros((4, 16), np.float32))
    before = data.read_bytes()
    rc, err = _run(["export", str(m), "--preset", "W8A8", "-o", str(tmp_path / "o.onnx"),
                    "--calib-data", str(data), "--eval-data", str(data), "--report", str(data)],
                   capsys)  # fmt: skip
    assert rc == 2 and "input of this run" in err and data.read_bytes() == before


def test_search_outputs_are_guarded(m: Path, tmp_path: Path, capsys) -> None:
    metric = tmp_path / "metric.py"
    metric.write_text("def score(outputs, reference, labels):\n    return 0.0\n")
    before = metric.read_text()
    rc, err = _run(["search", str(m), "--max-error", "0.1", "-o", str(tmp_path / "p.json"),
                    "--front", str(metric), "--metric", f"{metric}:score"], capsys)  # fmt: skip
    assert rc == 2 and "input of this run" in err and metric.read_text() == before
    rc, err = _run(["search", str(m), "--max-error", "0.1", "-o", str(m)], capsys)
    assert rc == 2 and "input of this run" in err
