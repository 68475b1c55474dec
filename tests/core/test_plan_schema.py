"""Plan JSON and ORT overrides are checked strictly: one PlanError line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitlens.cli import main
from bitlens.core.errors import PlanError
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.plan_schema import read_json_file
from tests.builders import mlp


@pytest.fixture(scope="module")
def info():
    return from_proto(mlp()).info


def _plan(info, layers: dict) -> dict:
    return {"bitlens_plan": 1, "layers": layers}


def test_dynamic_must_be_a_boolean(info) -> None:
    name = info.layers[0].name
    with pytest.raises(PlanError, match="'dynamic' must be true or false, not the string 'no'"):
        Plan.from_dict(info, _plan(info, {name: {"weight": None, "activation": "int8 sym",
                                                 "dynamic": "no"}}))  # fmt: skip


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ({"L": {"weight": 8}}, "must be a format name or null, not 8"),
        ({"L": {"wieght": "int8 sym"}}, "unknown key 'wieght'"),
        ({"L": {"weight": "int4 sym blk99999999999999999999"}}, "not understood"),
        ({"L": {"weight": "int4 sym blk" + "9" * 5000}}, "characters is not a format"),
        ({"L": "int8"}, "expected an object"),
    ],
)
def test_bad_layer_entries(info, layers: dict, match: str) -> None:
    name = info.layers[0].name
    fixed = {name: next(iter(layers.values()))}
    with pytest.raises(PlanError, match=match):
        Plan.from_dict(info, _plan(info, fixed))


def test_version_must_be_an_integer(info) -> None:
    with pytest.raises(PlanError, match="must be an integer, not true"):
        Plan.from_dict(info, {"bitlens_plan": True, "layers": {}})


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested 65 levels deep"),
        (b'{"bitlens_plan": ' + b"9" * 5000 + b"}", "5000 digits"),
        (b'{"bitlens_plan": NaN}', "NaN is not a JSON value"),
        (b"", "not valid JSON"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: bytes, match: str) -> None:
    p = tmp_path / "p.json"
    p.write_bytes(content)
    with pytest.raises(PlanError, match=match) as exc:
        read_json_file(p)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"quant_type": "QInt8", "axis": "abc"}, "'axis' must be an integer, not the string 'abc'"),
        ({"quant_type": "QInt8", "symmetric": "yes"}, "'symmetric' must be true or false"),
        ({"quant_type": "QInt8", "axis": True}, "'axis' must be an integer, not true"),
        ({"quant_type": 8}, "'quant_type' must be a string"),
        ({"quant_typ": "QInt8"}, "unknown key 'quant_typ'"),
        ({"quant_type": "QInt8", "axis": 10**20}, "is not an axis"),
    ],
)
def test_bad_ort_overrides(info, entry: dict, match: str) -> None:
    w = info.layers[0].weights[0].name
    with pytest.raises(PlanError, match=match):
        Plan.from_ort_overrides(info, {w: [entry]})


def test_cli_eval_with_a_bad_plan_exits_2(tmp_path: Path, capsys) -> None:
    import onnx

    m = tmp_path / "m.onnx"
    onnx.save(mlp(), m)
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps({"bitlens_plan": 1, "layers": {"x": {"dynamic": "no"}}}))
    assert main(["eval", str(m), "--plan", str(plan), "--samples", "2"]) == 2
    err = capsys.readouterr().err
    assert "dynamic" in err and len(err.strip().splitlines()) == 1
