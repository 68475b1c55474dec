"""Where the graph view draws each node: the core's layout on the view's grid.

Computed in the worker that opens a model (``jobs.Session.layout``), not in the window's
thread: on rapidocr's PP-OCRv4 recognizer (393 nodes, 454 edges) ``layout_model`` is
10 ms of pure Python, spent in the same turn as the graph's first paint (issue 11, the
window's event loop; docs/benchmarks.md "uiopen (session 15)").
"""

from __future__ import annotations

from bitlens.core.graph_layout import GraphLayout, layout_model
from bitlens.core.model.types import ModelInfo

SLOT_W = 180.0  # scene units between the centres of two nodes side by side
LAYER_H = 70.0  # and between two layers


def view_layout(info: ModelInfo) -> GraphLayout:
    """The layout the graph view draws ``info`` with."""
    return layout_model(info, x_gap=SLOT_W, y_gap=LAYER_H)
