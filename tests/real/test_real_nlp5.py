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
spindle seconds above the package's threshold.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.real import feeds_nlp5, wheels
from tests.real.test_real_models import Case
from tests.real.test_real_nlp3 import _layer_ops, _plain_ort, case_files, eval_and_export

_EEG = wheels.BRAINMAZE_EEG
CASES = (
    Case("eeg-seizure", _EEG, "modelA_paper.onnx", feeds_nlp5.seizure,
         {"Conv": 2, "LSTM": 2, "MatMul": 1}, min_sqnr_db=35.0),
    # 2 windows (1 calibrates, 1 evaluates): 7500 samples through 4e9 MACs each
    Case("eeg-spindles", _EEG, "spindle-detector-eeg.onnx", feeds_nlp5.spindles,
         {"Conv": 22, "ConvTranspose": 4, "MatMul": 3}, min_sqnr_db=25.0),
)  # fmt: skip
SAMPLES = {"eeg-seizure": 4, "eeg-spindles": 2}  # half calibrate, half evaluate


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return case_files(request.param, tmp_path_factory, SAMPLES[request.param.id])


def _evaluation(feeds: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The evaluation half of ``n`` samples as one feed: numbered feeds (NAME/i, equal
    shapes: the loader stacks them) or samples along axis 0."""
    if any("/" in k for k in feeds):
        names = sorted({k.split("/")[0] for k in feeds})
        return {k: np.concatenate([feeds[f"{k}/{i}"] for i in range(n // 2, n)]) for k in names}
    return {k: v[n // 2 :] for k, v in feeds.items()}


def test_w8a8_eval_and_export_keep_the_detectors_decisions(case) -> None:
    c, path, data, work, feeds = case
    assert _layer_ops(path) == c.ops

    ev, out = eval_and_export(path, data, work)
    [want], [got] = (_plain_ort(p, [_evaluation(feeds, SAMPLES[c.id])]) for p in (path, out))
    for (name, o), a, b in zip(ev["outputs"].items(), want, got, strict=True):
        a, b = a.astype(np.float64), b.astype(np.float64)
        sqnr = 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2))
        assert sqnr > c.min_sqnr_db, (name, sqnr)
        assert abs(sqnr - float(o["error"]["sqnr_db"])) < 0.5, (name, sqnr, o["error"])

    if c.id == "eeg-seizure":  # probs [time, batch, 4]: the class of every column and row
        assert np.array_equal(want[1].argmax(-1), got[1].argmax(-1))
        assert ev["outputs"]["probs"]["top1_agreement"] == 1.0
    else:  # detection [batch, 30 s, 3]: spindles/_decode.py keeps a second whose confidence,
        # the sigmoid of this logit, is >= 0.5 (decode_window's confidence_threshold)
        found = want[0][..., 0] >= 0.0
        assert found.sum() >= 3  # the synthetic window has spindles the float model finds
        assert np.array_equal(found, got[0][..., 0] >= 0.0)
