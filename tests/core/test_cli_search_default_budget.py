"""`bitlens search` with no budget searches at the Find Plan panel's default one (a quarter of
the float size); it refused to run ("one of the arguments ... is required"), while the
window starts with that budget filled in."""

from __future__ import annotations

import json

import onnx

from bitlens.core.search import DEFAULT_SIZE_RATIO
from bitlens.gui.search_panel import BUDGETS
from tests.builders import outlier_mlp
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
