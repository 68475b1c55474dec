"""More real public speech and tabular models through the default command-line path.

Silero VAD v6 as faster-whisper ships it (opset 18, a flat Conv + LSTM graph whose state
is two inputs), openWakeWord's mel-spectrogram front end (an STFT as two 1-channel convs,
a power spectrum of 1e12, a log) and ONNX Runtime's own scikit-learn example classifier
(ai.onnx.ml operators only). Each is opened, evaluated at W8A8 and exported with its
fidelity check, as a new user would; plus what each one showed broken before (cited).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bitlens.core.export import verdict
from bitlens.core.export.report import SIZE_TARGET
from tests.real import feeds_audio2, wheels
from tests.real.test_real_models import SAMPLES, Case, model_path, run_cli, w8a8_eval

CASES = (
    # W8A8 leaves it near 12 dB: the raw audio and the STFT's output at 8 bits (W8A16 gives
    # 28-32 dB; the search finds plans of W8A8's size near 26 dB)
    Case("silero-vad-v6", wheels.FASTER_WHISPER, "silero_vad_v6.onnx", feeds_audio2.silero_v6,
         {"Conv": 6, "LSTM": 1}, min_sqnr_db=8.0),
    # W8A8 leaves its log-mel output near 7 dB: 8-bit codes of a power spectrum spanning
    # twelve decades, then a log that magnifies the quiet bins' error (as basic-pitch's CQT)
    Case("wakeword-melspectrogram", wheels.OPENWAKEWORD, "melspectrogram.onnx",
         feeds_audio2.melspectrogram, {"Conv": 2, "MatMul": 1}, min_sqnr_db=5.0),
)  # fmt: skip


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    c: Case = request.param
    work = tmp_path_factory.mktemp(c.id)
    np.savez(work / "data.npz", **c.feeds(SAMPLES))
    return c, model_path(c.wheel, c.filename), work / "data.npz", work


def test_inspect_eval_and_export_at_w8a8(case) -> None:
    c, path, data, work = case
    res = run_cli("inspect", str(path), "--json")
    assert res.returncode == 0, res.stderr
    counts: dict[str, int] = {}
    for layer in json.loads(res.stdout)["layers"]:
        counts[layer["op_type"]] = counts.get(layer["op_type"], 0) + 1
    assert counts == c.ops

    ev = w8a8_eval(c, path, data)

    out = work / "w8a8.onnx"
    res = run_cli("export", str(path), "--preset", "W8A8", "--data", str(data), "-o", str(out),
                  "--json")  # fmt: skip
    fid = json.loads(res.stdout)
    assert res.returncode == 0 and fid["passed"], (fid["failures"], res.stderr[-2000:])
    assert [o["name"] for o in fid["outputs"]] == list(ev["outputs"])
    for o in fid["outputs"]:  # the file as written computes the simulation, bit for bit
        assert o["as_written_exact"], o
        assert o["level"] in (verdict.BIT_EXACT, verdict.REASSOCIATION, verdict.INTEGER), o
    assert out.stat().st_size == fid["file_bytes"]
    assert abs(fid["file_size_error"]) <= SIZE_TARGET


def test_silero_v6_stft_conv_saves_bytes_at_int4_blocks() -> None:
    """Its STFT is a 258x1x256 Conv: int4 blk32 blocks ran along the input-channel axis of
    size 1, one scale per weight, 290 KiB for 258 KiB of float. Along the kernel: 40 KiB."""
    c = CASES[0]
    path = model_path(c.wheel, c.filename)
    res = run_cli("inspect", str(path), "--json", "--formats", "int4 sym blk32")
    assert res.returncode == 0, res.stderr
    stft = json.loads(res.stdout)["layers"][0]
    assert stft["name"] == "/encoder/feature_extractor/Conv"
    assert stft["formats"]["int4 sym blk32"]["bytes"] < stft["bytes"] / 6


def test_melspectrogram_fp16_overflow_is_explained(tmp_path: Path) -> None:
    """fp16 activations turn its power spectrum (up to ~1e12) into inf, and its outputs NaN:
    the warning says which input overflows and by how much, and max abs says NaN (it said 0)."""
    c = CASES[1]
    path = model_path(c.wheel, c.filename)
    data = tmp_path / "data.npz"
    np.savez(data, **c.feeds(SAMPLES))
    res = run_cli("eval", str(path), "--preset", "W8A16", "--data", str(data))
    assert res.returncode == 0, res.stderr
    assert "first produced by layer 'MatMul_15'" in res.stderr
    assert "its fp16 input activation reaches" in res.stderr
    assert "past fp16's largest value 65504" in res.stderr
    assert "max abs nan" in res.stdout


def test_sklearn_classifier_with_only_ai_onnx_ml_operators_says_what_it_cannot_do() -> None:
    """ONNX Runtime's own example logreg_iris.onnx (onnxmltools: LinearClassifier,
    Normalizer, ZipMap; declares only the ai.onnx.ml opset). It read as a corrupt file."""
    datasets = pytest.importorskip("onnxruntime.datasets")
    path = Path(datasets.get_example("logreg_iris.onnx"))
    res = run_cli("inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert "3 ai.onnx.ml operators (LinearClassifier, Normalizer, ZipMap)" in res.stdout
    res = run_cli("eval", str(path), "--preset", "W8A8", "--samples", "2")
    assert res.returncode == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and "nothing to quantize" in err, err
