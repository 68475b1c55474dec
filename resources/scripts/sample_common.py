"""Shared steps of the sample-model scripts: export, measure in ONNX Runtime, write the folder.

Build-time only (needs torch); the app reads just the files these scripts write.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
OPSET = 17
IR_VERSION = 8  # readable by ONNX Runtime 1.20 and later


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)


def export(model: torch.nn.Module, example: torch.Tensor, input_name: str, path: Path) -> None:
    """TorchScript-based export: plain ONNX ops (MatMul, Softmax, LSTM...) at a fixed opset."""
    model.eval()
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=[input_name],
        output_names=["logits"],
        dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )
    m = onnx.load(str(path))
    m.ir_version = IR_VERSION
    m.producer_name = "bitlens sample script"
    m.producer_version = f"torch {torch.__version__}"
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, str(path))


def ort_accuracy(path: Path, x: np.ndarray, labels: np.ndarray, input_name: str) -> float:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {input_name: x})[0]
    return float(np.mean(np.argmax(logits, -1) == labels))


def write_sample(
    name: str,
    model: torch.nn.Module,
    x_test: np.ndarray,
    y_test: np.ndarray,
    input_name: str,
    meta: dict,
    started: float,
) -> None:
    folder = SAMPLES / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    export(model, torch.from_numpy(x_test[:2]), input_name, path)
    np.savez_compressed(folder / "data.npz", **{input_name: x_test, "labels": y_test})
    acc = ort_accuracy(path, x_test, y_test, input_name)
    meta = {
        **meta,
        "task": "classification",
        "metric": "accuracy",
        "float_accuracy": acc,
        "input": input_name,
        "eval_samples": len(y_test),
        "made_with": {
            "script": f"resources/scripts/{Path(sys.argv[0]).name}",
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
            "opset": OPSET,
            "train_seconds": round(time.time() - started, 1),
        },
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    print(f"{name}: float accuracy {acc:.4f} on {len(y_test)} held-out samples; files {sizes}")


def train(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    lr: float = 2e-3,
    batch: int = 64,
    weight_decay: float = 1e-4,
) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        sched.step()
        if epoch % 5 == 0 or epoch == epochs - 1:
            print(f"  epoch {epoch:3d} loss {total / len(xt):.4f}")
