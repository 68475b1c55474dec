"""A plan's quantized weights are computed once and shared: the engine's cached objects are
what the export writes and what the fidelity check compares the file with.

    small_cnn: x -> Conv(W1) -> Relu -> Conv(W2) -> ... -> y
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bitlens.core import quantized
from bitlens.core.errors import ExportError
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.formats.registry import FAMILIES
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.core.engine_models import small_cnn
from tests.core.test_engine import make_engine


def test_export_and_check_reuse_the_engines_quantized_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(small_cnn())
    plan = Plan.preset(engine.info, "W4A8").with_target("none")
    engine.evaluate(plan)  # the engine quantizes each planned weight once, here
    qm = quantized.quantize_model(engine, plan)
    for name, choice in plan.choices.items():
        for w in engine.info.layer(name).weights:
            assert qm.weight(w.name).values is engine.quantized_weight(w, choice.weight)
    calls: list[str] = []
    for family in FAMILIES:  # count every quantization, wherever it comes from
        real = type(family).quantize
        monkeypatch.setattr(
            type(family), "quantize",
            lambda self, x, fmt, *a, _real=real: calls.append(fmt.name) or _real(self, x, fmt, *a),
        )  # fmt: skip
    result = drain(export(engine, plan, tmp_path / "m.onnx", ExportOptions()))
    assert result.quantized is not None
    assert {n: q.values for n, q in result.quantized.weights.items()}.keys() == qm.weights.keys()
    for name, qw in result.quantized.weights.items():
        assert qw is qm.weights[name]  # the same objects: nothing was quantized again
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures
    assert calls == []


def test_activation_ranges_are_the_engines_calibrated_ones() -> None:
    engine = make_engine(small_cnn())
    plan = Plan.preset(engine.info, "W8A8").with_target("none")
    qm = quantized.quantize_model(engine, plan)
    assert qm.activations
    for (layer, act), aq in qm.activations.items():
        lo, hi = engine.activation_range(act, aq.fmt)
        assert np.array_equal(aq.value_range[0], lo) and np.array_equal(aq.value_range[1], hi)
        assert aq.layer == layer
    with pytest.raises(ExportError, match="not quantized"):
        qm.weight("no-such-weight")


def test_a_plan_for_another_model_is_refused() -> None:
    a, b = make_engine(small_cnn()), make_engine(small_cnn())
    with pytest.raises(ExportError, match="different model"):
        quantized.quantize_model(a, Plan.preset(b.info, "W8A8"))
