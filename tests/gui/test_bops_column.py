"""The table's BOPs column on a layer sized only through computed pads (open_nsfw's
export), and "unknown", never 0 or a blank, where a layer's MACs cannot be told."""

from __future__ import annotations

import onnx

from bitlens.core import compute
from bitlens.gui.layer_table_model import Column
from tests import builders
from tests.gui.conftest import open_model


def test_bops_column_counts_computed_sizes_and_says_unknown(
    qtbot, window, tmp_path, monkeypatch
) -> None:
    path = tmp_path / "pads.onnx"
    onnx.save(builders.pad_by_computed_amounts(), path)
    open_model(qtbot, window, path)
    model = window.table.model
    engine = window.document.session.engine
    macs = compute.compute_of(engine).macs
    assert macs == {"conv": 8 * 8 * 8 * 27, "fc": 4 * 512}  # one sample: [1,8,8,8], [1,4]
    for layer in ("conv", "fc"):
        index = model.index(model.row_of(layer), Column.BOPS)
        assert index.data() not in ("", "—", "unknown", "0", None)
        assert index.data(0x0003).endswith(" MACs")  # ToolTipRole: the MACs behind it
    # a layer whose sizes shape inference cannot tell (a custom op in front of it)
    unknown = compute.Compute({"conv": None, "fc": 2048}, {"x": (1, 3, 8, 8)})
    monkeypatch.setattr("bitlens.gui.layer_table_model.compute_of", lambda _engine: unknown)
    index = model.index(model.row_of("conv"), Column.BOPS)
    assert index.data() == "unknown"
    assert "MACs unknown" in index.data(0x0003)
