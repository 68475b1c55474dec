"""The layer detail's histogram axis labels fit their plot: pyqtgraph always labels its first
tick level, and a power spectrum's range (0 to 9.6e11, openWakeWord's mel front end) drew
five labels run together in 185 pixels."""

from __future__ import annotations

import pyqtgraph as pg

from bitlens.gui.compact_axis import GAP_PX, CompactAxis


def test_wide_labels_are_thinned_until_they_fit(qapp) -> None:
    size, lo, hi = 185.0, 0.0, 9.6e11
    plain, compact = pg.AxisItem("bottom"), CompactAxis("bottom")
    spacing, values = plain.tickValues(lo, hi, size)[0]

    def room(step: float) -> float:  # pixels from one label's centre to the next
        return step / (hi - lo) * size

    # pyqtgraph labels all of these: "4e+11" is about as wide as the room between ticks
    assert compact.label_width(list(values), spacing) + GAP_PX > room(spacing)
    levels = compact.tickValues(lo, hi, size)
    (top, kept), (_, rest) = levels
    assert top > spacing and len(kept) >= 2 and set(kept) | set(rest) == set(values)
    assert compact.label_width(list(kept), top) + GAP_PX <= room(top)
    assert compact.style["maxTextLevel"] == 0  # the thinned-out ticks stay unlabelled
    # short labels keep pyqtgraph's own ticks and labels
    assert compact.tickValues(0.0, 1.0, size) == plain.tickValues(0.0, 1.0, size)
    assert compact.style["maxTextLevel"] == plain.style["maxTextLevel"]


def test_count_axis_of_a_short_plot_keeps_a_line_per_label(qapp) -> None:
    size, lo, hi = 60.0, 0.0, 8500.0  # the layer detail's histograms at 1280x720
    compact = CompactAxis("left")
    (top, kept), *_ = compact.tickValues(lo, hi, size)
    assert len(kept) >= 2
    assert compact.label_width(list(kept), top) + 8 <= top / (hi - lo) * size


def test_a_very_short_axis_keeps_its_first_and_last_labels(qapp) -> None:
    compact = CompactAxis("left")
    _, values = pg.AxisItem("left").tickValues(0.0, 8500.0, 40.0)[0]
    (_, kept), *_ = compact.tickValues(0.0, 8500.0, 40.0)
    assert kept == [values[0], values[-1]] and len(values) > 2
