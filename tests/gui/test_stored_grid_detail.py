"""The layer detail says when the file stores a layer's weights as int8 codes, and which
grid the 8-bit presets keep them on; the sandbox lists that grid's format."""

from __future__ import annotations

from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import FLOAT
from bitlens.core.results import Progress
from bitlens.gui import jobs
from bitlens.gui.layer_detail import LayerDetailView
from tests.builders import conv_net
from tests.core.coded_models import coded_net


def _last(engine: Engine, layer: str) -> jobs.LayerDetail:
    gen = jobs.layer_detail(engine, layer, FLOAT)
    try:
        while True:
            item = next(gen)
            assert isinstance(item, Progress | jobs.LayerDetail)
    except StopIteration as stop:
        return stop.value


def test_the_detail_names_the_files_own_grid(qtbot) -> None:
    engine = Engine(from_proto(coded_net()[0]), None)
    view = LayerDetailView()
    qtbot.addWidget(view)
    fc = _last(engine, "fc")
    assert "int8 asym" in fc.formats  # the file's grid, though not a listed weight format
    assert {r.format for r in fc.schemes} == set(fc.formats)
    view.show_detail(fc)
    assert "keep the file's own grid (int8 asym), exactly" in view.header.text()
    view.show_detail(_last(engine, "head"))
    assert "on no grid Bitlens's min-max scales reproduce" in view.header.text()


def test_a_float_file_shows_no_grid_note(qtbot) -> None:
    engine = Engine(from_proto(conv_net()), None)
    detail = _last(engine, engine.info.layers[0].name)
    assert detail.grid_note == "" and "int8 asym" not in detail.formats
