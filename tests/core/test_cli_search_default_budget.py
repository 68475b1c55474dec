"""`bitlens search` with no budget searches at the Find Plan panel's default one (a quarter of
the float size); it refused to run ("one of the arguments ... is required"), while the
window starts with that budget filled in."""

from __future__ import annotations

import json

import onnx

from bitlens.core.search import DEFAULT_SIZE_RATIO
from bitlens.gui.search_panel import BUDGETS
from tests.builders import outlier_mlp
from tests.core.engine_models import small_cnn
from tests.core.test_cli_entry import run_cli


def test_search_without_a_budget_uses_the_windows_default_size_ratio(tmp_path) -> None:
    assert BUDGETS["size_ratio"][3] == DEFAULT_SIZE_RATIO == 0.25
    path, plan, front = tmp_path / "mlp.onnx", tmp_path / "plan.json", tmp_path / "front.json"
    onnx.save(outlier_mlp(d=64, hidden=128, out=32), path)  # 48 KiB: a quarter fits
    res = run_cli("search", str(path), "--samples", "6", "-o", str(plan), "--front", str(front))
    assert res.returncode == 0, res.stderr
    assert "budget: at most 0.25 of the float size" in res.stdout
    data = json.loads(front.read_text())
    assert data["best"]["exported_bytes"] <= 0.25 * data["float_bytes"]


def test_a_default_budget_no_plan_fits_searches_at_w8a8s_size(tmp_path) -> None:
    """On a model so small that the quantizers' scales and the export's nodes make every
    plan larger than a quarter of the float file (OpenCV Zoo's YuNet face detector, 232 KB:
    nothing under 85.7 KB), the default search stopped with "no plan fits in N bytes".
    With no budget given it now searches at the W8A8 preset's size and says so (a budget
    the user gives still stops there: test_search.py, test_cli_search.py)."""
    path, plan, front = tmp_path / "cnn.onnx", tmp_path / "plan.json", tmp_path / "front.json"
    onnx.save(small_cnn(), path)  # 6.6 KB of float weights in 3 layers
    res = run_cli("search", str(path), "--samples", "6", "-o", str(plan), "--front", str(front))
    assert res.returncode == 0, res.stderr
    assert "the default budget (at most 0.25 of the float size) fits no plan" in res.stdout
    assert "searched at the W8A8 preset's size instead" in res.stdout
    data = json.loads(front.read_text())
    w8a8 = next(r for r in data["references"] if r["label"] == "W8A8")
    assert data["best"]["file_bytes"] <= w8a8["file_bytes"]
    assert data["best"]["error"] <= w8a8["error"]
