"""Text tables show layer names too long for a column by the part that tells them apart.

tf2onnx names a node after every TensorFlow op fused into it, joined by ';': basic-pitch's
nmp.onnx has Conv names of up to 362 characters, and ``bitlens inspect`` printed 507-character
lines with the numbers past any terminal's edge.
"""

from __future__ import annotations

from dataclasses import replace

import onnx

from bitlens.cli.eval import render as render_eval
from bitlens.cli.inspect import to_text
from bitlens.cli.names import LONG, resolve_layer
from bitlens.cli.search import parse_pins
from bitlens.cli.sweep import render as render_sweep
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.report import inspect_model
from bitlens.core.results import drain
from tests import builders


def _tf2onnx_named() -> onnx.ModelProto:
    m = builders.mlp()
    fused = ";".join(f"model_1/block_{i}/BiasAdd/ReadVariableOp" for i in range(4))
    for node in m.graph.node:
        if node.op_type == "MatMul":  # fc1, fc2: 3 x 42 characters, then the layer's own
            node.name = f"{fused};model_1/{node.name}/MatMul"
    return m


def test_long_names_are_shortened_in_the_tables_and_kept_in_full_elsewhere() -> None:
    model = from_proto(_tf2onnx_named())
    full = model.info.layer_names
    assert all(len(n) > LONG for n in full)
    text = to_text(inspect_model(model, ["int8 sym ch"]))
    engine = Engine(model, Dataset.random(model.info, n=4, seed=0), device="cpu")
    ev = engine.evaluate(Plan.preset(model.info, "W8A8"))
    sweep = render_sweep(drain(engine.sweep(["int8 sym ch"])), top=0)
    ev = replace(ev, first_divergence=(full[1], None))  # "first at:" names the layer too
    for table in (text, render_eval(ev), sweep):
        assert not any(n in table for n in full)
        assert "fc1/MatMul" in table and "fc2/MatMul" in table
        assert "2 layer names longer than 60 characters" in table
        assert max(len(line) for line in table.splitlines()) < 140
    assert set(ev.layers) == set(full)  # --json prints these


def test_a_shortened_name_resolves_to_its_layer_and_pins() -> None:
    info = from_proto(_tf2onnx_named()).info
    short = info.short_names
    for name in info.layer_names:
        assert resolve_layer(short[name], info) == name == resolve_layer(name, info)
    assert resolve_layer("no_such_layer", info) is None
    pins = parse_pins([f"{short[info.layer_names[0]]}=int4 sym ch"], info)
    assert list(pins) == [info.layer_names[0]]


def test_short_names_stay_as_they_are() -> None:
    text = to_text(inspect_model(from_proto(builders.mlp()), ["int8 sym ch"]))
    assert "fc1" in text and "note:" not in text
