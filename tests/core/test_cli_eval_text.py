"""``bitlens eval`` text says what "diverge" means (it read as a contradiction next to an
output SQNR of 48 dB on a ViT whose middle layers fell below 20 dB)."""

from __future__ import annotations

from bitlens.cli.eval import render
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.engine_models import small_cnn


def test_divergence_line_names_its_threshold() -> None:
    model = from_proto(small_cnn())
    engine = Engine(model, Dataset.random(model.info, n=4))
    ev = engine.evaluate(Plan.preset(model.info, "binary"))
    assert any(ev.first_divergence)
    line = next(x for x in render(ev).splitlines() if "diverge" in x)
    assert "accumulated SQNR falls below 20 dB" in line, line
