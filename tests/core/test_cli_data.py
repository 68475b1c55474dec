"""Data arguments of the CLI: feeds of different shapes, --calib-data/--eval-data, the stated
split, the random-inputs warning and the --dim hint."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.core.data_models import line_feeds, ocr_line
from tests.core.test_cli_entry import run_cli


@pytest.fixture(scope="module")
def ocr(tmp_path_factory):
    root = tmp_path_factory.mktemp("ocr")
    named, unnamed = root / "ocr.onnx", root / "ocr_unnamed.onnx"
    onnx.save(ocr_line(batch=1), named)
    onnx.save(ocr_line(batch=1, width=None), unnamed)
    for part, widths in (("cal", [10, 17, 23]), ("ev", [12, 30])):
        folder = root / part
        folder.mkdir()
        for i, f in enumerate(line_feeds(widths, seed=len(part))):
            np.save(folder / f"line{i}.npy", f["x"])
    return root


def test_folder_of_lines_with_the_split_stated(ocr) -> None:
    res = run_cli("eval", str(ocr / "ocr.onnx"), "--preset", "W8A8", "--data", str(ocr / "cal"))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "data: cal/ (3 feeds)" in out
    assert "split: the first 2 of 3 feeds calibrate, the other 1 evaluate" in out
    assert "calibration: 2 feeds, 2 rows; x [1, 1, 8, 10], [1, 1, 8, 17]" in out
    assert "evaluation: 1 feeds, 1 rows; x [1, 1, 8, 23]" in out
    assert "random" not in out


def test_calib_and_eval_data_with_json_report_on_stderr(ocr) -> None:
    res = run_cli(
        "eval", str(ocr / "ocr.onnx"), "--preset", "W8A8", "--json",
        "--calib-data", str(ocr / "cal"), "--eval-data", str(ocr / "ev"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    json.loads(res.stdout)  # nothing else on stdout
    assert "split: separate calibration and evaluation data" in res.stderr
    assert "calibration: 3 feeds" in res.stderr and "evaluation: 2 feeds" in res.stderr


def test_calib_fraction_and_calib_data_alone(ocr) -> None:
    res = run_cli(
        "eval", str(ocr / "ocr.onnx"), "--preset", "W8A8", "--dim", "width=16",
        "--samples", "8", "--calib-fraction", "0.75",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "the first 6 of 8 samples calibrate" in res.stdout
    assert "warning: evaluation runs on random inputs" in res.stdout
    res = run_cli(
        "eval", str(ocr / "ocr.onnx"), "--preset", "W8A8", "--calib-data", str(ocr / "cal")
    )
    assert res.returncode == 0, res.stderr
    assert "only calibration data given: its 3 feeds also serve for evaluation" in res.stdout


@pytest.mark.parametrize(
    ("model", "args", "message"),
    [
        ("ocr.onnx", [], "dynamic dimension 'width' at axis 3 and no size was given for it; "
         "give it with --dim width=SIZE"),
        ("ocr_unnamed.onnx", [], "give it with --dim x:3=SIZE"),
        ("ocr.onnx", ["--dim", "height=3"], "--dim height: the model has no dynamic dimension"),
        ("ocr.onnx", ["--data", "{root}/cal", "--eval-data", "{root}/ev"], "not both"),
        ("ocr.onnx", ["--data", "{root}/cal", "--calib-fraction", "1"], "--calib-fraction"),
        ("ocr.onnx", ["--eval-data", "{root}/nothing"], "no such data file or folder"),
    ],
)  # fmt: skip
def test_bad_data_arguments_are_one_line(ocr, model, args, message) -> None:
    argv = [a.format(root=ocr) for a in args]
    res = run_cli("eval", str(ocr / model), "--preset", "W8A8", *argv)
    assert res.returncode != 0
    assert message in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_a_folder_of_images_for_dynamic_sizes_takes_them_from_dim(tmp_path) -> None:
    """MTCNN's PNet (``[N, M1, M2, 3]``) and PP-OCRv6's recognizer (``[?, 3, 48, ?]``) with
    ``--data images/``: the error said "give an image size" and the command line had no way
    to; ``--dim`` now gives the height and width the images are resized to."""
    from PIL import Image

    from tests.builders import nhwc_conv

    m = nhwc_conv()
    for d, name in zip(m.graph.input[0].type.tensor_type.shape.dim, "NHW", strict=False):
        d.dim_param = name  # x: [N, H, W, 3]
    onnx.save(m, tmp_path / "nhwc.onnx")
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.new("RGB", (20, 10), (40 * i, 90, 200)).save(images / f"{i}.png")
    args = ("eval", str(tmp_path / "nhwc.onnx"), "--preset", "W8A8", "--data", str(images))
    res = run_cli(*args)
    assert res.returncode != 0
    assert "give an image size (on the command line: --dim H=SIZE --dim W=SIZE)" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = run_cli(*args, "--dim", "H=6", "--dim", "W=12", "--json")
    assert res.returncode == 0, res.stderr
    assert "x [1, 6, 12, 3]" in res.stderr  # NHWC, the sizes given
