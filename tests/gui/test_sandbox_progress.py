"""The weight sandbox fills row by row, cheap formats first, with the final numbers.

On a 30522-row embedding the k-means rows took most of a minute while the
table stayed empty; now every row is shown when it is computed, the k-means
ones last, and a row still computing shows "…" and cannot be applied.
"""

from __future__ import annotations

import onnx
from PySide6.QtCore import QSignalBlocker

from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import FLOAT
from bitlens.core.results import Progress
from bitlens.gui import jobs
from bitlens.gui.layer_detail import LayerDetailView
from tests import builders


def _details(m: onnx.ModelProto, layer: str) -> list[jobs.LayerDetail]:
    engine = Engine(from_proto(m), None)
    gen = jobs.layer_detail(engine, layer, FLOAT)
    out = []
    try:
        while True:
            item = next(gen)
            if not isinstance(item, Progress):
                out.append(item)
    except StopIteration as stop:
        out.append(stop.value)
    return out


def test_rows_arrive_one_by_one_k_means_last_with_the_same_numbers() -> None:
    m = builders.embedding_model()
    details = _details(m, "embed")
    final = details[-1]
    assert final.complete and [s.format for s in final.schemes] == list(final.formats)
    partial = [d for d in details if d.formats and len(d.schemes) < len(d.formats)]
    counts = [len(d.schemes) for d in partial]
    assert counts == list(range(len(counts))), "one more row per stage"
    assert len(counts) == len(final.formats)  # an empty table, then every row but the last
    # cheap formats first: the k-means rows come after all the others
    order = [next(s.format for s in d.schemes if s not in p.schemes)
             for p, d in zip(partial, [*partial[1:], final], strict=True)]  # fmt: skip
    kmeans = [f for f in final.formats if f.startswith("km")]
    assert kmeans and order[-len(kmeans) :] == kmeans
    # the numbers of each row are those of the whole table computed at once
    engine = Engine(from_proto(m), None)
    table = {
        name: (err, nbytes) for name, err, nbytes in engine.scheme_table("embed", final.formats)
    }
    for s in final.schemes:
        assert (s.error, s.bytes_after) == table[s.format]


def test_pending_rows_show_dots_and_cannot_be_applied(qtbot) -> None:
    details = _details(builders.embedding_model(), "embed")
    half = next(d for d in details if d.formats and len(d.schemes) == len(d.formats) // 2)
    view = LayerDetailView()
    qtbot.addWidget(view)
    view.show_detail(half)
    table = view.sandbox
    assert table.rowCount() == len(half.formats)
    assert [table.item(r, 0).text() for r in range(table.rowCount())] == list(half.formats)
    done = {s.format for s in half.schemes}
    picked: list[tuple[str, str]] = []
    view.formatPicked.connect(lambda layer, fmt: picked.append((layer, fmt)))
    for r, name in enumerate(half.formats):
        assert (table.item(r, 1).text() == "…") == (name not in done)
        view._on_pick(r, 0)
    assert sorted(f for _, f in picked) == sorted(done)  # pending rows are not applied
    with QSignalBlocker(view):
        view.show_detail(details[-1])
    assert "…" not in {table.item(r, 1).text() for r in range(table.rowCount())}


def test_a_layer_without_activation_input_shows_no_empty_axes(qtbot) -> None:
    # g2p-id's BERT in the window: its embedding's activation plot drew a count axis 0..1
    # over an empty 0..1 range under "this layer has no quantizable activation input"
    m = builders.embedding_model()
    view = LayerDetailView()
    qtbot.addWidget(view)
    view.show_detail(_details(m, "embed")[-1])
    for plot, shown in ((view.act_plot, False), (view.weight_plot, True)):
        item = plot.getPlotItem()
        assert [item.getAxis(a).isVisible() for a in ("left", "bottom")] == [shown, shown]
