"""The sweep of a model with several heads, each its own output (a detector: CenterFace's
heatmap, scale, offset and landmarks; a captcha reader's one softmax per digit).

The sweep reads one error per (layer, format) at the first float output. A head's layers do
not reach that output, so every format of them read as no error at all (inf dB, cosine 1):
on the captcha reader the digit-1 head at int4 is the worst entry of the sweep (10 dB at its
own output) but was listed as harmless. Such a layer is now read at the first output it
reaches, and the entry says which.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from bitlens.cli.sweep import render
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.builders import FLOAT, bias, init, model, weights


def two_heads() -> onnx.ModelProto:
    """x[1,3,8,8] -> trunk (Conv, Relu) -> head_a (Conv) -> ya, and -> head_b (Conv) -> yb."""
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "wt", "bt"], ["t"], name="trunk", pads=[1] * 4),
        mk("Relu", ["t"], ["r"]),
        mk("Conv", ["r", "wa", "ba"], ["ya"], name="head_a"),
        mk("Conv", ["r", "wb", "bb"], ["yb"], name="head_b"),
    ]
    g = helper.make_graph(
        nodes,
        "two_heads",
        [helper.make_tensor_value_info("x", FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("ya", FLOAT, [1, 2, 8, 8]),
         helper.make_tensor_value_info("yb", FLOAT, [1, 4, 8, 8])],
        [init("wt", weights((8, 3, 3, 3), seed=1)), init("bt", bias(8, seed=2)),
         init("wa", weights((2, 8, 1, 1), seed=3)), init("ba", bias(2, seed=4)),
         init("wb", weights((4, 8, 1, 1), seed=5)), init("bb", bias(4, seed=6))],
    )  # fmt: skip
    return model(g)


def test_a_head_is_read_at_its_own_output() -> None:
    m = from_proto(two_heads())
    engine = Engine(m, Dataset.random(m.info, n=4, seed=1), device="cpu")
    entries = {e.layer: e for e in drain(engine.sweep(["int2 sym ch"]))}
    assert entries["trunk"].at_output is None and entries["head_a"].at_output is None
    assert entries["head_b"].at_output == "yb"
    for name, out in (("trunk", "ya"), ("head_a", "ya"), ("head_b", "yb")):
        got = entries[name].output.sqnr_db
        plan = Plan(m.info).with_choices({name: LayerChoice.of("int2 sym ch")})
        whole = engine.evaluate(plan).outputs[out].error.sqnr_db
        assert np.isfinite(got) and abs(got - whole) < 1e-3, (name, got, whole)
    # the table says where a head was read, only because one was read elsewhere
    table = render(list(entries.values()), 0, "ya")
    assert "at output" in table.splitlines()[0]
    assert [line.split()[-1] for line in table.splitlines()[2:5]].count("yb") == 1
