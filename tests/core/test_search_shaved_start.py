"""Uniform plans a little over a size budget, brought under it by the cheapest steps down
and tried as starts of the local search (core/search/weightpath.py ``shaved_uniform``)."""

from __future__ import annotations

from bitlens.core.formats import parse_format
from bitlens.core.search import Budget
from tests.builders import conv_net
from tests.core.test_search import _engine, _run

INT8 = parse_format("int8 sym ch")


def test_uniform_8_bit_just_over_the_budget_is_tried_one_step_down() -> None:
    """Arabic-name-romanizer's decoder: 8-bit weights with the wide activation were 282 bytes
    over W8A8's size, and the search never tried them shaved (its plan had 0.0062 error on
    64 new rows where that one had 0.0052). Here the budget is a byte below the uniform
    8-bit plan's: the search tries it with one layer a step down, within the budget (on
    this conv net neither the path nor the refinement passed there before)."""
    engine = _engine(conv_net())
    big, _ = _run(engine, Budget(max_bytes=10**9))
    acts = {n: c.activation for n, c in big.best.plan.choices.items()}
    uniform = [
        p for p in big.tried
        if all(c.weight == INT8 for c in p.plan.choices.values() if c.weight is not None)
        and {n: c.activation for n, c in p.plan.choices.items()} == acts
    ]  # fmt: skip
    assert uniform, "the uniform 8-bit plan in the search's activation context"
    limit = uniform[0].file_bytes - 1
    result, _ = _run(engine, Budget(max_bytes=limit))
    shaved = [
        p for p in result.tried
        if p.file_bytes <= limit
        and sum(c.weight != INT8 for c in p.plan.choices.values() if c.weight is not None) == 1
        and {n: c.activation for n, c in p.plan.choices.items()} == acts
    ]  # fmt: skip
    assert shaved, [p.summary() for p in result.tried]
    # the one layer moved went down (to its next smaller efficient format), not up
    name = next(n for n, c in shaved[0].plan.choices.items() if c.weight != INT8)
    assert shaved[0].plan[name].weight is not None
    assert shaved[0].plan[name].weight.bits < 8, shaved[0].plan[name].weight
    assert result.best.file_bytes <= limit and result.best.error <= shaved[0].error
