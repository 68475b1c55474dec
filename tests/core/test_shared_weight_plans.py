"""A weight read by several layers takes one weight format for all its readers.

captcha-whisperer's CRNN unrolls an LSTMCell into 80 Gemms reading 4 shared initializers. A
plan with ``cell_0`` at int8 and the other steps float was exported (and simulated) with the
int8 weight for every step, while the window and the CLI showed the other steps as float:
plans now keep a group of readers at one weight choice, the sweep and the search treat the
group as one decision, and the export refuses a plan that disagrees.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import ExportError
from bitlens.core.export.exporter import ExportOptions, export, preflight
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions, search
from bitlens.core.search.measures import sensitivities
from bitlens.core.shared_weights import weight_groups
from tests.builders import FLOAT, bias, init, model, weights

STEPS, D = 3, 16
CELLS = tuple(f"cell_{t}/Gemm" for t in range(STEPS))
INT8 = "int8 sym ch"


def _shared_then_head() -> onnx.ModelProto:
    """Three unrolled steps reading ``cell.w`` (as PyTorch exports an LSTMCell in a loop),
    then a Gemm ``head`` with its own weight."""
    nodes, h = [], "x"
    for t in range(STEPS):
        nodes.append(
            helper.make_node("Gemm", [h, "cell.w", "cell.b"], [f"g{t}"], CELLS[t], transB=1)
        )
        nodes.append(helper.make_node("Tanh", [f"g{t}"], [f"h{t + 1}"], f"cell_{t}/Tanh"))
        h = f"h{t + 1}"
    nodes.append(helper.make_node("Gemm", [h, "head.w"], ["y"], "head", transB=1))
    g = helper.make_graph(
        nodes,
        "shared_then_head",
        [helper.make_tensor_value_info("x", FLOAT, [2, D])],
        [helper.make_tensor_value_info("y", FLOAT, [2, D])],
        [
            init("cell.w", weights((D, D), seed=21, fan_in=D)),
            init("cell.b", bias(D, seed=22)),
            init("head.w", weights((D, D), seed=23, fan_in=D)),
        ],
    )
    return model(g)


@pytest.fixture(scope="module")
def engine() -> Engine:
    m = from_proto(_shared_then_head())
    eng = Engine(m, Dataset.random(m.info, n=4, seed=0), device="cpu")
    drain(eng.calibrate())
    return eng


def _split(info) -> dict[str, LayerChoice]:
    """The plan the sweep and search used to produce: one reader int8, the others float;
    every reader with its own activation format."""
    return {
        CELLS[0]: LayerChoice.of(INT8, "uint8 asym"),
        CELLS[1]: LayerChoice.of(None, "int8 sym"),
        CELLS[2]: LayerChoice.of(None, "int8 sym"),
    }


def test_groups_are_the_readers_of_one_weight(engine: Engine) -> None:
    groups = weight_groups(engine.info)
    assert {n: groups[n] for n in CELLS} == dict.fromkeys(CELLS, CELLS)
    assert "head" not in groups


def test_a_plan_that_splits_a_group_is_normalized_with_a_note(engine: Engine) -> None:
    info = engine.info
    data = {"bitlens_plan": 1, "layers": {n: c.to_dict() for n, c in _split(info).items()}}
    plan = Plan.from_dict(info, data)
    assert [plan[n].weight for n in CELLS] == [parse_format(INT8)] * STEPS
    # activations stay each reader's own
    assert [plan[n].activation.name for n in CELLS] == ["uint8 asym", "int8 sym", "int8 sym"]
    assert plan["head"].is_float
    assert len(plan.notes) == 1
    assert all(n in plan.notes[0] for n in CELLS) and INT8 in plan.notes[0]
    again = Plan.from_json(info, plan.to_json())  # what it saves is consistent
    assert again == plan and again.notes == ()
    # two quantized readers that disagree: the first quantizing reader in model order wins
    two = Plan(info, {CELLS[2]: LayerChoice.of("int4 sym ch"), CELLS[1]: LayerChoice.of(INT8)})
    assert {plan_w.name for plan_w in (two[n].weight for n in CELLS)} == {INT8}


def test_editing_one_reader_sets_its_group(engine: Engine) -> None:
    plan = Plan(engine.info, {CELLS[1]: LayerChoice.of(None, "int8 sym")})
    edited = plan.with_choices({CELLS[2]: LayerChoice.of("int4 sym ch")})
    assert [edited[n].weight.name for n in CELLS] == ["int4 sym ch"] * STEPS
    assert edited[CELLS[1]].activation.name == "int8 sym"  # kept
    assert edited["head"].is_float and edited.notes == ()
    back = edited.with_choices({CELLS[0]: LayerChoice()})  # back to float: the group too
    assert all(back[n].weight is None for n in CELLS)
    assert back[CELLS[1]].activation.name == "int8 sym"
    # an activation-only edit leaves the group's weights alone
    act = edited.with_choices({CELLS[0]: LayerChoice.of("int4 sym ch", "uint8 asym")})
    assert [act[n].weight.name for n in CELLS] == ["int4 sym ch"] * STEPS


def test_the_table_shows_what_the_export_stores_and_runs(engine: Engine, tmp_path: Path) -> None:
    """The plan's rows (what the window and CLI show), the evaluation's bytes, and the
    exported file agree; the exported model's outputs match the simulation (ORT reference)."""
    plan = Plan(engine.info, _split(engine.info))
    ev = engine.evaluate(plan)
    int8_once = ev.layers[CELLS[0]].bytes_after
    assert all(ev.layers[n].bytes_after == int8_once < D * D * 4 for n in CELLS)
    assert ev.bytes_after == int8_once + D * D * 4  # the shared weight once, head float
    out = tmp_path / "o.onnx"
    result = drain(export(engine, plan, out, ExportOptions()))
    stored = onnx.load(out)
    int8 = [t for t in stored.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert [tuple(t.dims) for t in int8 if len(t.dims) == 2] == [(D, D)]
    assert sum(r.bytes_float for r in result.layers.values() if r.bytes_float) == D * D * 4
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    sim = engine.run_outputs(plan, engine.data.evaluation)
    for i, k in enumerate(engine.data.evaluation):
        got = sess.run(None, engine.data.samples[k])[0]
        want = sim["y"][i]
        np.testing.assert_allclose(got, want, atol=2e-2 * float(np.abs(want).max()))


def test_the_export_refuses_a_plan_that_splits_a_group(engine: Engine) -> None:
    plan = Plan(engine.info, _split(engine.info))
    # a plan made inconsistent behind Plan's back (its constructor normalizes)
    plan._choices = MappingProxyType({CELLS[0]: LayerChoice.of(INT8)})
    with pytest.raises(ExportError, match=r"'cell.w' is shared .*int8 sym ch0? and float"):
        preflight(engine, plan)


def test_the_sweep_lists_a_group_once(engine: Engine) -> None:
    fmts = [INT8, "int4 sym ch"]
    entries = drain(engine.sweep(fmts))
    assert sorted((e.layer, e.format) for e in entries) == sorted(
        (n, f) for n in (CELLS[0], "head") for f in fmts
    )
    for e in entries:  # its error is the whole group's: the one tensor the file holds
        if e.layer == CELLS[0]:
            ev = engine.evaluate(Plan(engine.info, {CELLS[2]: LayerChoice.of(e.format)}))
            assert e.output.sqnr_db == pytest.approx(ev.outputs["y"].error.sqnr_db, abs=0.05)


def test_the_search_decides_a_group_once_and_never_splits_it(engine: Engine) -> None:
    sens = drain(sensitivities(engine, [INT8, "int4 sym ch"], ["uint8 asym"]))
    weight_rows = {e.layer for e in sens if e.kind == "weight"}
    assert weight_rows == {CELLS[0], "head"}
    assert {e.layer for e in sens if e.kind == "activation"} == {*CELLS, "head"}
    options = SearchOptions(
        Budget(size_ratio=0.5),
        front_probes=4,
        refine_evaluations=8,
        references=("W8A8",),
        check_export=False,
    )
    result = drain(search(engine, options))
    plans = [p.plan for p in (*result.tried, *result.front, result.best)]
    for plan in plans:
        assert len({(plan[n].weight, plan[n].recovery) for n in CELLS}) == 1, plan.to_dict()
    assert any(plan[CELLS[0]].weight is not None for plan in plans)


def test_the_cli_reads_a_split_plan_as_the_window_does(tmp_path: Path) -> None:
    """``bitlens eval`` rows show every reader at the format the export stores, with a note."""
    from tests.core.test_cli_inspect import run_cli

    onnx.save(_shared_then_head(), tmp_path / "m.onnx")
    split = {"bitlens_plan": 1, "layers": {CELLS[1]: {"weight": INT8, "activation": None}}}
    (tmp_path / "p.json").write_text(json.dumps(split))
    res = run_cli("eval", str(tmp_path / "m.onnx"), "--plan", str(tmp_path / "p.json"), "--json")
    assert res.returncode == 0, res.stderr
    assert "note: p.json: layers cell_0/Gemm, cell_1/Gemm, cell_2/Gemm read one" in res.stderr
    rows = json.loads(res.stdout)["layers"]
    assert [rows[n]["weight_format"] for n in CELLS] == [INT8] * STEPS
    assert rows["head"]["weight_format"] is None
    res = run_cli("sweep", str(tmp_path / "m.onnx"), "--formats", INT8)
    assert res.returncode == 0, res.stderr
    assert "note: cell_0/Gemm shares its weights with 2 other layer(s)" in res.stderr
    assert "cell_1/Gemm" not in res.stdout and "cell_0/Gemm" in res.stdout
