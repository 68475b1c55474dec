"""Session 13's text and speech models, through the command line with default options.

pythainlp 5.4.0's thai2rom romanizer (PyTorch 1.8, opset 13): its encoder reads a word's
int64 character ids and int32 length, sorts the batch by length with a TopK (PyTorch's
``pack_padded_sequence``) around an embedding and a bidirectional LSTM; its decoder step is an
LSTM with MatMul attention over the encoder's outputs and two Gemms, and declares its
attention output ``54`` as [1, 11] where it is [1, length]. EfficientWord-Net 1.0.5's hotword
embedder: a slimmed ResNet-50 (PyTorch 2.0, opset 14, 53 convs, 83 MiB, a '%' in its file
name) from 1.5 s of log filterbank to a unit 2048-vector. Each is evaluated at W8A8 and
exported with its fidelity check; the output error ``eval`` reports must be what plain ONNX
Runtime measures on the exported file. Fed after each package's own preprocessing
(feeds_text8.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.real import feeds_text8, wheels_text8
from tests.real.test_real_models import model_path, run_cli
from tests.real.test_real_nlp3 import _layer_ops, _plain_ort, eval_and_export, sqnr_as_eval_reports

WORDS = 8  # the first 4 calibrate, the other 4 evaluate


def _runs(feeds: dict[str, np.ndarray], first: int, count: int) -> list[dict[str, np.ndarray]]:
    """Numbered feeds ``first`` to ``first + count - 1`` as ONNX Runtime feeds."""
    names = sorted({k.split("/")[0] for k in feeds})
    return [{k: feeds[f"{k}/{i}"] for k in names} for i in range(first, first + count)]


def test_thai2rom_encoder_sorted_by_length_reports_its_own_error(tmp_path) -> None:
    """The TopK over the lengths picks nothing that quantization could swap: the outputs'
    error is their own (it was the embedding table's weight SQNR, 43.4 dB on all three),
    and it is what the exported file gives in plain ONNX Runtime."""
    path = model_path(wheels_text8.PYTHAINLP, "thai2rom_encoder.onnx")
    assert _layer_ops(path) == {"Gather": 1, "LSTM": 1}
    feeds = feeds_text8.thai2rom_encoder(WORDS)
    np.savez(tmp_path / "data.npz", **feeds)
    ev, out = eval_and_export(path, tmp_path / "data.npz", tmp_path)
    assert not any(o.get("measured_on") for o in ev["outputs"].values()), ev["outputs"]
    evaluation = _runs(feeds, WORDS // 2, WORDS // 2)
    want, got = _plain_ort(path, evaluation), _plain_ort(out, evaluation)
    # The file runs the LSTM as DynamicQuantizeLSTM, which quantizes its hidden state at every
    # step; the engine runs that kernel too (bitlens.core.engine.lstm_nodes), so eval is the
    # file: 46.8, 46.8, 54.2 dB both (eval said 47.5, 47.9, 54.5 before it ran the kernel).
    sqnr_as_eval_reports(ev, want, got, 40.0, gap_db=0.05)
    res = run_cli("eval", str(path), "--preset", "W8A8", "--data", str(tmp_path / "data.npz"),
                  "--deployed", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    deployed = {
        o["name"]: {"sqnr_db": o["deployed_sqnr_db"]} for o in json.loads(res.stdout)["deployed"]
    }
    sqnr_as_eval_reports({"outputs": {n: {"error": e} for n, e in deployed.items()}}, want, got,
                         40.0, gap_db=0.05)  # fmt: skip


def test_thai2rom_decoder_step_matches_plain_onnx_runtime(tmp_path) -> None:
    encoder = model_path(wheels_text8.PYTHAINLP, "thai2rom_encoder.onnx")
    path = encoder.with_name("thai2rom_decoder.onnx")
    assert _layer_ops(path) == {"Gemm": 2, "Gather": 1, "LSTM": 1}
    feeds = feeds_text8.thai2rom_decoder(encoder, 12)  # 4 words, 3 steps each
    np.savez(tmp_path / "data.npz", **feeds)
    ev, out = eval_and_export(path, tmp_path / "data.npz", tmp_path)
    evaluation = _runs(feeds, 6, 6)
    # decoder_output, decoder_hidden_2, the attention 54: 46, 41 and 42 dB measured
    sqnr_as_eval_reports(ev, _plain_ort(path, evaluation), _plain_ort(out, evaluation), 35.0)


@pytest.fixture(scope="module")
def efficientword(tmp_path_factory: pytest.TempPathFactory):
    path = model_path(wheels_text8.EFFICIENTWORD, wheels_text8.EFFICIENTWORD_MODEL)
    work = tmp_path_factory.mktemp("efficientword")
    feeds = feeds_text8.efficientword(4)  # 2 calibrate, 2 evaluate
    np.savez(work / "data.npz", **feeds)
    return path, work / "data.npz", work, feeds


def test_efficientword_w8a8_export_is_what_eval_reports(efficientword) -> None:
    path, data, work, feeds = efficientword
    ev, out = eval_and_export(path, data, work, compression=(3.9, 4.0))
    evaluation = [{"input": feeds["input"][i : i + 1]} for i in (2, 3)]
    # 23 dB measured (cosine 0.997): 53 convs at 8 bits, the embedding compared by cosine
    sqnr_as_eval_reports(ev, _plain_ort(path, evaluation), _plain_ort(out, evaluation), 18.0)
