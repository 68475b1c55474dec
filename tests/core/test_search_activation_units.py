"""The search's activation step: a shared weight's readers are one decision, and an 8-bit
swap is never tried where it cannot lower the expected error (core/search/activations.py)."""

from __future__ import annotations

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions, search
from tests.builders import mlp
from tests.core.test_shared_weight_plans import CELLS, _shared_then_head

FAST = dict(front_probes=4, refine_evaluations=8, references=("W8A8",), check_export=False)


def _engine(proto) -> Engine:
    m = from_proto(proto)
    eng = Engine(m, Dataset.random(m.info, n=4, seed=0), device="cpu")
    drain(eng.calibrate())
    return eng


def test_a_shared_weights_readers_take_one_activation_decision() -> None:
    """Three unrolled Gemms reading one weight: each activation format is measured once for
    the group (under its first reader), and every plan gives the readers one activation."""
    engine = _engine(_shared_then_head())
    result = drain(search(engine, SearchOptions(Budget(size_ratio=0.5), **FAST)))
    acts = [e for e in result.sensitivities if e.kind == "activation"]
    assert acts, "the activation step measured nothing"
    assert not {e.layer for e in acts} & set(CELLS[1:])
    per_format = [e.format for e in acts if e.layer == CELLS[0]]
    assert per_format and len(per_format) == len(set(per_format))
    for p in (*result.tried, result.best):
        assert len({p.plan[n].activation for n in CELLS}) == 1, p.plan.to_dict()


def test_no_symmetric_swap_under_min_max_calibration() -> None:
    """With min-max ranges both 8-bit grids cover every calibration value and int8 sym's
    step is never finer than uint8 asym's, so the swap cannot lower the expected error: the
    search measures it on no input, signed (fc1) or after a Relu (fc2), and no plan takes
    it (it did on fc1, where its error on the fitted rows came out lower by chance)."""
    engine = _engine(mlp())
    assert min(engine.activation_range("x", parse_format("uint8 asym"))) < 0  # fc1: signed
    result = drain(search(engine, SearchOptions(Budget(size_ratio=0.5), **FAST)))
    assert not [e for e in result.sensitivities if e.format == "int8 sym"]
    for p in (*result.tried, result.best):
        assert all(
            c.activation is None or c.activation.name != "int8 sym" for c in p.plan.choices.values()
        ), p.plan.to_dict()


def test_symmetric_swap_measured_where_calibration_clips() -> None:
    """Percentile calibration clips each grid's range its own way, so the swap is measured
    on fc1's signed input; fc2 reads a Relu's output, where int8 sym would spend half its
    codes on negative values that never occur, and is not."""
    m = from_proto(mlp())
    engine = Engine(m, Dataset.random(m.info, n=4, seed=0), device="cpu")
    drain(engine.calibrate("percentile"))
    result = drain(search(engine, SearchOptions(Budget(size_ratio=0.5), **FAST)))
    swaps = {e.layer for e in result.sensitivities if e.format == "int8 sym"}
    assert "fc1" in swaps
    assert "fc2" not in swaps


def test_a_one_point_ladder_is_measured_near_the_budget() -> None:
    """A layer whose only hull point is a quantized format (predicted at no noise, so it
    beats float on both counts) has no step to compare with the path's: it is measured,
    not skipped (the text sample's head Gemm, whose int8 noise decided its plan)."""
    from bitlens.core.formats import parse_format
    from bitlens.core.search.weightpath import _near

    int8 = parse_format("int8 sym ch")
    assert _near([(193, 0.0, int8)], 0, 1e-9)
    ladder = [(1000, 0.0, None), (500, 1e-6, int8), (250, 1e-3, int8)]
    assert _near(ladder, 1, 2e-9)  # its step in costs 2e-9 per byte: at the budget's slope
    assert not _near(ladder, 2, 1e-12)  # both steps cost far more per byte than the path's
