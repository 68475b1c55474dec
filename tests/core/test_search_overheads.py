"""The per-format export overheads the search measures (core/search/overheads.py): one export
of two layers gives what one export of each would (the first layer's cost with the constants
its format shares, the second's without)."""

from __future__ import annotations

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions, exported_size
from bitlens.core.search.overheads import _one_and_two
from bitlens.core.search.state import SearchState
from bitlens.core.weights import weight_bytes_after
from tests.core.engine_models import small_cnn


def test_one_export_of_two_layers_matches_two_exports() -> None:
    m = from_proto(small_cnn())
    engine = Engine(m, Dataset.random(m.info, n=4, seed=0), device="cpu")
    drain(engine.calibrate())
    s = SearchState(engine, SearchOptions(Budget(size_ratio=0.5)))
    e0 = exported_size(engine, s.plan_for({}))
    a, b = [la for la in m.info.layers if la.weights][:2]
    for name in ("int8 sym ch", "int4 sym ch", "km3"):
        fmt = parse_format(name)
        e1 = exported_size(engine, s.plan_for({a.name: LayerChoice(fmt)}))
        e2 = exported_size(engine, s.plan_for({a.name: LayerChoice(fmt), b.name: LayerChoice(fmt)}))
        first = e1 - e0 - weight_bytes_after(a, fmt) + a.nbytes
        second = e2 - e1 - weight_bytes_after(b, fmt) + b.nbytes
        got = _one_and_two(s, [a, b], fmt, e0)
        assert sum(got) == first + second, name  # the file's growth, to the byte
        # the split between them: within the export record's bytes for one layer name
        assert abs(got[0] - first) <= 32 and abs(got[1] - second) <= 32, (name, got, first, second)
        if fmt.bits < 8:  # packed codes: the first pays the unpacking constants they share
            assert got[0] > got[1], name
