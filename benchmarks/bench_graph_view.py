"""Graph view responsiveness on large graphs: building the scene, painting it fitted
(every node on screen) and at 1:1, the minimap, a find-box search and a recolour.

The same synthetic transformer-shaped graphs as ``bench_graph_layout.py`` (about 1,000
and 5,000 nodes), shown by the real graph panel offscreen. Every figure is printed as a
ratio to the core layout of the same graph measured in the same run (the part that was
already benchmarked), so that the numbers survive a busy machine.

Run: ``QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_graph_view.py``.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import onnx
from PySide6.QtWidgets import QApplication

from bench_graph_layout import transformer_like
from bitlens.core.graph_layout import layout_model
from bitlens.core.model.types import Edge, ModelInfo, NodeInfo, TensorInfo
from bitlens.core.plan import Plan


def model_info(blocks: int) -> ModelInfo:
    names, edges = transformer_like(blocks)
    ops = {"ln1": "LayerNormalization", "ln2": "LayerNormalization", "softmax": "Softmax",
           "reshape": "Reshape", "act": "Gelu", "add1": "Add", "add2": "Add"}  # fmt: skip
    nodes = tuple(
        NodeInfo(n, ops.get(n.rpartition("/")[2], "MatMul"), (), ())
        for n in names
        if not n.startswith("input:")
    )
    return ModelInfo(
        path=None, opset=17, ir_version=9, producer="bench",
        inputs=(TensorInfo("x", (1, 16), "float32"),),
        outputs=(TensorInfo("y", (1, 16), "float32"),),
        nodes=nodes, layers=(), edges=tuple(Edge(s, d, t) for s, d, t in edges),
    )  # fmt: skip


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(app: QApplication, blocks: int) -> tuple[int, float, list[float]]:
    """Nodes, layout seconds, and each figure as a ratio to the layout."""
    from bitlens.gui.document import Document
    from bitlens.gui.graph_panel import GraphPanel

    info = model_info(blocks)
    t_layout = best(lambda: layout_model(info, x_gap=180, y_gap=70))
    session = SimpleNamespace(info=info, model=SimpleNamespace(proto=onnx.ModelProto(), info=info))

    def build() -> tuple[Document, GraphPanel]:
        doc = Document()
        panel = GraphPanel(doc)
        panel.resize(400, 900)
        panel.show()
        doc.load(session, Plan(info))  # type: ignore[arg-type]
        app.processEvents()
        return doc, panel

    t_build = best(lambda: build()[1].close())
    _doc, panel = build()  # the document stays alive while the panel shows it
    view = panel.view
    view.fit()
    t_fit = best(lambda: view.viewport().grab())
    view.resetTransform()
    t_one = best(lambda: view.viewport().grab())
    t_map = best(lambda: (panel.minimap._invalidate(), panel.minimap.grab()))
    t_find = best(lambda: (panel.find_box.edit.setText(""),
                           panel.find_box.edit.setText("b200/ff")))  # fmt: skip
    t_recolor = best(lambda: view._recolor())
    n = len(view.node_names)
    panel.close()
    times = (t_build, t_fit, t_one, t_map, t_find, t_recolor)
    return n, t_layout, [t / t_layout for t in times]


def main() -> None:
    app = QApplication.instance() or QApplication([])
    print(f"{'nodes':>6} {'layout s':>9} {'build':>7} {'fit paint':>10} {'1:1 paint':>10} "
          f"{'minimap':>8} {'find':>6} {'recolour':>9}   (each: times the layout)")  # fmt: skip
    for blocks in (66, 330):
        n, t_layout, r = measure(app, blocks)  # type: ignore[arg-type]
        print(f"{n:>6} {t_layout:>9.3f} " + " ".join(
            f"{x:>{w}.2f}" for x, w in zip(r, (7, 10, 10, 8, 6, 9), strict=True)))


if __name__ == "__main__":
    main()
