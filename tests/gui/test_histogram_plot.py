"""The layer detail's histograms, their items updated in place (gui/histogram_plot.py), look
exactly as when each drawing clears the plot and adds new items (as the detail did before),
through a sequence of distributions: a grid with clip lines, a float layer (no grid), a layer
with no input activation (hidden axes), the grid again."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from bitlens.core.formats import parse_format
from bitlens.core.plan import LayerChoice
from bitlens.core.viewdata import distribution
from bitlens.gui.histogram_plot import HistogramItems
from bitlens.gui.jobs import LayerDetail
from bitlens.gui.layer_detail import LayerDetailView


def _details() -> list[LayerDetail]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal(512).astype(np.float32)
    a = (3.0 * rng.standard_normal(1024)).astype(np.float32)
    int4, uint8 = parse_format("int4 sym"), parse_format("uint8 asym")
    gridded = LayerDetail(
        "conv", LayerChoice(int4, uint8), 2048, distribution(w, int4), "conv.w",
        distribution(a, uint8, value_range=(-4.0, 5.0)), "x",
    )  # fmt: skip
    plain = LayerDetail(
        "fc", LayerChoice(), 1024, distribution(0.1 * w, None), "fc.w", distribution(a, None), "y"
    )
    no_input = LayerDetail("gather", LayerChoice(), 64, distribution(w[:64], None), "g.w")
    return [gridded, plain, no_input, gridded]


def _pixels(view: LayerDetailView) -> list[bytes]:
    out = []
    for plot in (view.weight_plot, view.act_plot):
        image = plot.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
        out.append(bytes(image.constBits()))
    return out


class _Rebuilt(LayerDetailView):
    """Every drawing clears the plot and draws into new items."""

    def _draw(self, plot, dist, *rest) -> None:
        item = plot.getPlotItem()
        item.clear()
        self.histograms[plot] = HistogramItems(item)
        super()._draw(plot, dist, *rest)


def _view(qtbot, cls=LayerDetailView) -> LayerDetailView:
    view = cls()
    qtbot.addWidget(view)
    view.resize(420, 640)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_histograms_updated_in_place_look_as_drawn_anew(qtbot) -> None:
    details = _details()
    shown, rebuilt = _view(qtbot), _view(qtbot, _Rebuilt)
    for i, detail in enumerate(details):
        for view in (shown, rebuilt):
            view.show_detail(detail)
        qtbot.wait(10)
        assert _pixels(shown) == _pixels(rebuilt), (i, detail.layer)
        for a, b in ((shown.weight_plot, rebuilt.weight_plot), (shown.act_plot, rebuilt.act_plot)):
            assert a.getPlotItem().viewRange() == b.getPlotItem().viewRange(), (i, detail.layer)
    # the bars hold the shown distribution's own counts
    bars = shown.histograms[shown.weight_plot].bars
    _x, y = bars.getData()
    assert np.array_equal(y, details[-1].weights.counts)
