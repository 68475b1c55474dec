"""A fifth set of real public non-vision models, through the command line with default options:
brainmaze-eeg-models' EEG detectors (time series), fed synthetic EEG after the package's own
preprocessing (feeds_nlp5.py).

The seizure detector (PyTorch 2.14, opset 18) reads a [batch, 100, time] spectrogram with a
Conv2d, two LSTMs and a MatMul, and lays both outputs out [time, batch, 4]: its batch is on
axis 1 of the outputs. The spindle detector (PyTorch 2.5, opset 17) reads two inputs of 7500
samples through 22 Conv1d (GELU written with Erf), a bottleneck and ConvTranspose upsampling,
and gives per-second detections and a per-sample segmentation (logits; the package applies the
sigmoid). Each is opened, evaluated at W8A8 and exported with its fidelity check; what eval
reports must be what plain ONNX Runtime measures on the exported file, and the exported
detectors must make the package's decisions: the same seizure class per column, the same
spindle seconds above the package's threshold. Plus pyfrspell's French lemmatizer, partly
quantized already by ONNX Runtime's quantize_dynamic: only its two float GRUs are layers, and
its export must decode the same lemma characters and word type.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.real import feeds_nlp5, wheels
from tests.real.test_real_models import Case, model_path
from tests.real.test_real_nlp3 import (
    _layer_ops,
    _plain_ort,
    case_files,
    eval_and_export,
    sqnr_as_eval_reports,
)

_EEG, _FR = wheels.BRAINMAZE_EEG, wheels.PYFRSPELL
_LEMMA = "lemma_type_model.int8.onnx"
CASES = (
    Case("eeg-seizure", _EEG, "modelA_paper.onnx", feeds_nlp5.seizure,
         {"Conv": 2, "LSTM": 2, "MatMul": 1}, min_sqnr_db=35.0),
    # 2 windows (1 calibrates, 1 evaluates): 7500 samples through 4e9 MACs each
    Case("eeg-spindles", _EEG, "spindle-detector-eeg.onnx", feeds_nlp5.spindles,
         {"Conv": 22, "ConvTranspose": 4, "MatMul": 3}, min_sqnr_db=25.0),
    Case("pyfrspell-lemma", _FR, _LEMMA,
         lambda n: feeds_nlp5.pyfrspell(model_path(_FR, _LEMMA).parent, n),
         {"GRU": 2}, min_sqnr_db=30.0),
)  # fmt: skip
SAMPLES = {"eeg-seizure": 4, "eeg-spindles": 2, "pyfrspell-lemma": 6}  # half calibrate


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return case_files(request.param, tmp_path_factory, SAMPLES[request.param.id])


def _evaluation(feeds: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """The evaluation half of ``n`` samples, each a feed: numbered feeds (NAME/i) or samples
    along axis 0."""
    if any("/" in k for k in feeds):
        names = sorted({k.split("/")[0] for k in feeds})
        return [{k: feeds[f"{k}/{i}"] for k in names} for i in range(n // 2, n)]
    return [{k: v[i : i + 1] for k, v in feeds.items()} for i in range(n // 2, n)]


def test_w8a8_eval_and_export_keep_the_models_decisions(case) -> None:
    c, path, data, work, feeds = case
    assert _layer_ops(path) == c.ops

    ev, out = eval_and_export(path, data, work)
    evaluation = _evaluation(feeds, SAMPLES[c.id])
    want, got = _plain_ort(path, evaluation), _plain_ort(out, evaluation)
    sqnr_as_eval_reports(ev, want, got, c.min_sqnr_db)

    def decided(outputs: list[list[np.ndarray]], j: int) -> np.ndarray:  # classes: last axis
        return np.concatenate([r[j].argmax(-1).ravel() for r in outputs])

    if c.id == "eeg-seizure":  # probs [time, batch, 4]: the class of every column and row
        assert np.array_equal(decided(want, 1), decided(got, 1))
        assert ev["outputs"]["probs"]["top1_agreement"] == 1.0
    elif c.id == "eeg-spindles":  # detection [batch, 30 s, 3]: spindles/_decode.py keeps a
        # second whose confidence, the sigmoid of this logit, is >= 0.5 (confidence_threshold)
        found = np.concatenate([w[0][..., 0].ravel() >= 0.0 for w in want])
        assert found.sum() >= 3  # the synthetic window has spindles the float model finds
        assert np.array_equal(found, np.concatenate([g[0][..., 0].ravel() >= 0.0 for g in got]))
    else:  # every lemma character (token_logits) and the word type (code_logits)
        for j in (0, 1):
            assert np.array_equal(decided(want, j), decided(got, j)), ev["outputs"]
