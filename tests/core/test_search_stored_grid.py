"""The search offers a layer whose weights the file stores as int8 codes the file's own grid.

tinyocr's PP-OCRv6 tiny recognizer stores its weights as int8 codes (-127..127) times a scale
per output channel. The 8-bit presets keep that grid (tests/core/test_stored_grid.py), but the
search's ``int8 sym ch`` (-128..127) re-rounded the weights: at W8A8's exported size its
weights-only plans had 0.037 relative output error where W8A8's weights with float
activations, same bytes, have 1.6e-6. The reference here is float64 numpy on the codes and
scales the model is built from.
"""

from __future__ import annotations

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions, exported_size, search
from bitlens.core.search.runner import grid_formats
from tests.core.coded_models import coded_net, coded_pair


def test_weights_only_search_keeps_the_stored_codes_exactly() -> None:
    loaded = from_proto(coded_pair())
    x = np.random.default_rng(0).standard_normal((6, 1, 3, 8, 8)).astype(np.float32)
    data = Dataset.from_arrays(loaded.info, {"x": x})
    engine = Engine(loaded, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    limit = exported_size(engine, Plan.preset(loaded.info, "W8A8"))
    result = drain(search(engine, SearchOptions(
        Budget(max_bytes=limit), base_activation=None, speed_check=False, references=("W8A8",),
        front_probes=4, refine_evaluations=8, recovery=(), deployed_check=False,
    )))  # fmt: skip
    # each layer measured alone at 8 bits on its own grid (exact: float32 rounding of the
    # outputs at most), never re-rounded on int8 sym ch's (about 1e-3)
    eight = {(s.layer, s.format): s.error for s in result.sensitivities
             if s.kind == "weight" and s.format.startswith("int8")}  # fmt: skip
    assert set(eight) == {("conv", "int8 sym narrow ch"), ("fc", "int8 asym")}, eight
    assert max(eight.values()) < 1e-5, eight
    best = result.best
    assert best.file_bytes <= limit
    assert best.plan["conv"].weight.name == "int8 sym narrow ch"
    assert best.plan["fc"].weight.name == "int8 asym"
    assert best.error < 1e-5, best.error


def test_grid_formats_go_to_the_layers_stored_on_them_only() -> None:
    m, _ = coded_net()
    info = from_proto(m).info
    fmts = [parse_format(n) for n in ("int8 sym ch", "int4 sym ch")]
    grids = grid_formats(info, info.layers, fmts, "ort-cpu")
    assert {f.name: set(v) for f, v in grids.items()} == {
        "int8 sym narrow ch": {"conv"}, "int8 asym": {"fc"},
    }  # fmt: skip  # head: no exact grid; int8 sym ch already a candidate for every layer
    assert grid_formats(info, info.layers, fmts[1:], "ort-cpu") == {}  # no 8-bit candidate
    tensorrt = grid_formats(info, info.layers, fmts, "tensorrt")
    assert {f.name for f in tensorrt} == {"int8 sym narrow ch"}
