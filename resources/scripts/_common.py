"""Shared steps of the sample-model build scripts (build time only, needs torch).

Each ``make_*.py`` trains a small model, then calls :func:`finish` which exports it
to a single-file opset-17 ONNX model, checks it, measures its float accuracy on the
held-out data with ONNX Runtime and writes ``model.onnx``, ``data.npz`` and
``meta.json`` (with file sizes and hashes, so tests can tell a stale file).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

OPSET = 17
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


def seed_everything(seed: int) -> None:
    """Seed every RNG and force deterministic kernels, so a rebuild gives the same weights."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    # Thread count changes float summation order; pin it for reproducibility.
    torch.set_num_threads(1)


def versions() -> dict[str, str]:
    import sklearn

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "scikit-learn": sklearn.__version__,
    }


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates 0600; these are shared resources, readable by all.
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _rename_anonymous_initializers(model: onnx.ModelProto) -> None:
    """Give exporter-generated names (``onnx::LSTM_111``) readable ones (``lstm.W``).

    The names show up in Bitlens' layer table, so ``onnx::MatMul_87`` is not useful.
    """
    slots = {"LSTM": ["X", "W", "R", "B"], "GRU": ["X", "W", "R", "B"]}
    renames: dict[str, str] = {}
    taken = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if not name.startswith("onnx::") or name in renames or name not in taken:
                continue
            parts = [p for p in node.name.split("/") if p]
            if len(parts) > 1 and parts[-1].startswith(node.op_type):
                parts = parts[:-1]  # "/lstm/LSTM" -> "lstm"
            base = ".".join(parts) or node.op_type.lower()
            slot = slots.get(node.op_type, [])
            suffix = slot[k] if k < len(slot) else ("weight" if k == 1 else f"in{k}")
            new = f"{base}.{suffix}"
            while new in taken:
                new += "_"
            renames[name] = new
            taken.add(new)
    for init in model.graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in model.graph.node:
        for k, name in enumerate(node.input):
            if name in renames:
                node.input[k] = renames[name]


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    input_name: str,
    doc: str,
) -> onnx.ModelProto:
    """Export with the TorchScript exporter: it emits plain ONNX ops (LSTM/GRU as one op)."""
    module.eval()
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        (example,),
        buf,
        dynamo=False,
        opset_version=OPSET,
        do_constant_folding=True,
        input_names=[input_name],
        output_names=["logits"],
        dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
    )
    model = onnx.load_from_string(buf.getvalue())
    _rename_anonymous_initializers(model)
    model.doc_string = doc
    model.producer_name = "bitlens resources/scripts"
    onnx.checker.check_model(model, full_check=True)
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT and init.data_type != onnx.TensorProto.INT64:
            raise RuntimeError(f"unexpected initializer type in {init.name}")
    return model


def ort_logits(model_bytes: bytes, inputs: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    (out,) = sess.run(["logits"], inputs)
    return np.asarray(out)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    # Same definition as bitlens.core.samples.accuracy: the tests compare to 1e-9.
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def _file_record(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def finish(
    name: str,
    module: torch.nn.Module,
    input_name: str,
    eval_inputs: np.ndarray,
    labels: np.ndarray,
    meta: dict[str, Any],
    extra_files: dict[str, bytes] | None = None,
) -> dict[str, Any]:
    """Export, verify against torch, measure with ORT and write the sample directory."""
    out_dir = SAMPLES_DIR / name
    model = export_onnx(module, torch.from_numpy(eval_inputs[:2]), input_name, meta["description"])
    model_bytes = model.SerializeToString()

    logits = ort_logits(model_bytes, {input_name: eval_inputs})
    module.eval()
    with torch.no_grad():  # the torch model's own answer, to check the export against
        ref = module(torch.from_numpy(eval_inputs)).numpy()
    max_diff = float(np.max(np.abs(logits - ref)))
    if max_diff > 1e-3:
        raise RuntimeError(f"ONNX export of {name} differs from torch by {max_diff}")
    # The batch dimension must really be dynamic (LSTM exports have tripped on this).
    one = ort_logits(model_bytes, {input_name: eval_inputs[:1]})
    if float(np.max(np.abs(one - logits[:1]))) > 1e-4:
        raise RuntimeError(f"{name}: batch-1 run differs from the batched run")
    acc = accuracy(logits, labels)

    atomic_write_bytes(out_dir / "model.onnx", model_bytes)
    buf = io.BytesIO()
    np.savez_compressed(buf, **{input_name: eval_inputs, "labels": labels})
    atomic_write_bytes(out_dir / "data.npz", buf.getvalue())
    for fname, data in (extra_files or {}).items():
        atomic_write_bytes(out_dir / fname, data)

    files = ["model.onnx", "data.npz", *sorted(extra_files or {})]
    full = {
        **meta,
        "task": "classification",
        "metric": "accuracy",
        "float_accuracy": acc,
        "n_samples": len(labels),
        "input": {
            "name": input_name,
            "dtype": str(eval_inputs.dtype),
            "shape": ["batch", *eval_inputs.shape[1:]],
            **meta.get("input", {}),
        },
        "output": {"name": "logits", "shape": ["batch", len(meta["class_names"])]},
        "opset": OPSET,
        "torch_vs_onnxruntime_max_abs_diff": max_diff,
        "files": {f: _file_record(out_dir / f) for f in files},
    }
    full["made_by"] = {**meta.get("made_by", {}), "versions": versions()}
    text = json.dumps(full, indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(out_dir / "meta.json", text.encode())
    print(f"{name}: float accuracy {acc:.4f} on {len(labels)} samples, "
          f"model {full['files']['model.onnx']['bytes']} B, "
          f"data {full['files']['data.npz']['bytes']} B", file=sys.stderr)
    return full
