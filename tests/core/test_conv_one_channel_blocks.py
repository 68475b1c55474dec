"""A Conv with one input channel per group (an STFT as a Conv, a depthwise conv): block
formats run along its longest kernel axis. Along axis 1 (size 1) every block held one value
with its own scale, and int4 blk32 stored 290 KiB for Silero VAD v6's 258 KiB STFT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from bitlens.cli import main
from bitlens.core.model.loader import load_model
from tests.builders_audio import stft_conv


def test_one_channel_conv_blocks_along_its_kernel_and_exports_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proto = stft_conv()
    path, data = tmp_path / "stft.onnx", tmp_path / "data.npz"
    onnx.save(proto, str(path))
    info = load_model(path).info
    stft, mix = info.layer("stft").weights[0], info.layer("mix").weights[0]
    assert (stft.block_axis, mix.block_axis) == (2, 1)
    np.savez(data, x=np.random.default_rng(0).normal(size=(8, 1, 256)).astype(np.float32))
    out = tmp_path / "w4.onnx"
    assert main(["export", str(path), "--preset", "W4A16", "--data", str(data), "-o", str(out),
                 "--json"]) == 0  # fmt: skip
    fid = json.loads(capsys.readouterr().out)
    assert fid["passed"]
    # the file stores the STFT weight as 4-bit codes with one scale per block of 32 taps
    # along axis 2 (two per row of 64); the weight ONNX Runtime rebuilds from them is within
    # half a step of the float one
    exported = onnx.load(str(out))
    inits = {t.name: t for t in exported.graph.initializer}
    scale = numpy_helper.to_array(inits["wf_scale"])
    assert scale.shape == (16, 1, 2)
    exported.graph.output.append(
        onnx.helper.make_tensor_value_info("wf", onnx.TensorProto.FLOAT, None)
    )
    x = np.zeros((1, 1, 256), np.float32)
    got = ort.InferenceSession(exported.SerializeToString()).run(["wf"], {"x": x})[0]
    want = numpy_helper.to_array(next(t for t in proto.graph.initializer if t.name == "wf"))
    step = np.repeat(scale, 32, axis=2)
    assert np.all(np.abs(got - want) <= step / 2 + 1e-6)
    assert np.abs(got - want).max() > 0  # quantized, not stored float
