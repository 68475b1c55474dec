"""The 8-bit presets keep weights the file stores as int8 codes on the file's own grid.

tinyocr's PP-OCRv6 tiny recognizer stores each weight as int8 codes (-127..127), Cast to
float and multiplied by a per-output-channel scale. W8A8's ``int8 sym ch`` (-128..127)
re-rounded them (weight SQNR 48 dB where the file's grid gives them back exactly). The
references are float64 numpy on the codes and scales built here, and ONNX Runtime running
the exported file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bitlens.cli import main
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.weights import file_bytes
from tests.core.coded_models import FLAT, OUT, C, K, coded_net, coded_pair


def test_each_decoded_weight_is_matched_to_the_grid_that_reproduces_it() -> None:
    m, stored = coded_net()
    loaded = from_proto(m)
    grids = loaded.info.stored_grids
    assert grids == {
        ("", "conv_w"): "int8 sym narrow ch",
        ("", "fc_w"): "int8 asym",
        ("", "head_w"): None,  # channel 2's codes stop at 100: min-max scales differ
    }
    for layer in loaded.info.layers:
        q, s = stored[layer.name]
        ref = (q.astype(np.float64) * s.astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(loaded.weight(layer.weights[0]), ref)
    (note,) = [n for n in loaded.info.notes if "own grid" in n]
    assert "keep 2 of the 3 weight(s)" in note and "int8 asym, int8 sym narrow ch" in note
    assert "1 decoded weight(s) lie on no int8 grid" in note


@pytest.mark.parametrize("preset", ["W8A8", "W8A16"])
def test_the_8bit_presets_reproduce_the_stored_weights_exactly(preset: str) -> None:
    m, _ = coded_net()
    loaded = from_proto(m)
    plan = Plan.preset(loaded.info, preset)
    assert plan["conv"].weight.name == "int8 sym narrow ch"
    assert plan["fc"].weight.name == "int8 asym"
    assert plan["head"].weight.name == "int8 sym ch"  # no exact grid: the preset's own
    data = Dataset.from_arrays(
        loaded.info, {"x": np.random.default_rng(0).standard_normal((4, 1, 3, 8, 8), np.float32)}
    )
    ev = Engine(loaded, data, device="cpu").evaluate(plan)
    for name in ("conv", "fc"):
        err = ev.layers[name].weight
        assert err is not None and err.sqnr_db > 130, (name, err)  # float32 rounding at most
    assert ev.layers["head"].weight.sqnr_db < 80  # re-rounded, as the note says


def test_tensorrt_keeps_only_its_own_narrow_grid() -> None:
    m, _ = coded_net()
    loaded = from_proto(m)
    plan = Plan.preset(loaded.info, "W8A8", target="tensorrt")
    assert plan["conv"].weight.name == "int8 sym narrow ch"
    assert plan["fc"].weight.name == "int8 sym narrow ch"  # int8 asym is not TensorRT's


def test_a_preset_on_a_float_model_is_unchanged() -> None:
    from tests.builders import conv_net

    loaded = from_proto(conv_net())
    assert loaded.info.stored_grids == {}
    plan = Plan.preset(loaded.info, "W8A8")
    assert {c.weight.name for c in plan.choices.values()} == {"int8 sym ch"}


def test_the_export_stores_the_files_codes_and_equals_the_simulation(
    tmp_path: Path, capsys
) -> None:
    m, stored = coded_net()
    src = tmp_path / "coded.onnx"
    onnx.save(m, src)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(1).standard_normal((8, 3, 8, 8)).astype(np.float32))
    out = tmp_path / "q.onnx"
    rc = main(["export", str(src), "--preset", "W8A8", "--data", str(data), "-o", str(out),
               "--json", "--device", "cpu"])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert rc == 0, report["failures"]
    # ONNX Runtime on the written file gives the engine's simulated output, bit for bit
    assert [o["as_written_exact"] for o in report["outputs"]] == [True]
    formats = {la["name"]: la["weight_format"] for la in report["layers"]}
    assert formats == {"conv": "int8 sym narrow ch", "fc": "int8 asym", "head": "int8 sym ch"}
    # the file's own codes and scales come back out (the float32 scale to its last bit or so)
    exported = onnx.load(out)
    inits = [numpy_helper.to_array(t) for t in exported.graph.initializer]
    for name in ("conv", "fc"):
        q, s = stored[name]
        assert any(v.dtype == np.int8 and np.array_equal(v, q) for v in inits), name
        assert any(
            v.dtype == np.float32 and v.size == s.size
            and np.allclose(v.ravel(), s.ravel(), rtol=2e-7, atol=0)
            for v in inits
        ), name  # fmt: skip


def test_eval_sizes_an_int8_file_as_stored(tmp_path: Path, capsys) -> None:
    """`bitlens eval` said "3.84x" at W8A8 on a file of int8 codes (its float32 size in
    memory against the plan); it now gives what the file stores as well, as the window's
    status bar does."""
    src = tmp_path / "coded.onnx"
    onnx.save(coded_pair(), src)
    # codes of one byte, a float32 scale per conv channel, one scale and zero point for fc
    stored = C * 3 * K * K + 4 * C + FLAT * OUT + 4 + 1
    assert main(["eval", str(src), "--preset", "W8A8", "--json", "--device", "cpu"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["file_weight_bytes"] == stored == d["bytes_after"]
    assert main(["eval", str(src), "--preset", "W8A8", "--device", "cpu"]) == 0
    assert "1.00x against this plan" in capsys.readouterr().out
    assert file_bytes(from_proto(coded_net()[0]).info) is None  # a grid unknown: not said
