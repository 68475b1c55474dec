"""The bundled sample models (image, speech, text) with their evaluation data.

Each sample is a folder ``resources/samples/<name>/`` with ``model.onnx``,
``data.npz`` (inputs keyed by input name plus ``labels``) and ``meta.json``
(title, domain, task metric, the float accuracy measured when it was made,
and how it was made). The scripts in ``resources/scripts/`` rebuild them.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from bitlens.core.errors import BitlensError

DEFAULT_SAMPLE = "digits_cnn"
ORDER = ("digits_cnn", "speech_kws", "text_transformer")


@dataclass(frozen=True)
class Sample:
    name: str
    title: str
    domain: str  # "image" | "speech" | "text"
    model_path: Path
    data_path: Path
    meta: dict[str, Any]


def _candidates() -> list[Path]:
    out = []
    env = os.environ.get("BITLENS_RESOURCES")
    if env:
        out.append(Path(env))
    frozen = getattr(sys, "_MEIPASS", None)  # PyInstaller bundle
    if frozen:
        out.append(Path(frozen) / "resources")
    out.append(Path(__file__).resolve().parents[3] / "resources")  # source checkout
    out.append(Path(sys.prefix) / "share" / "bitlens" / "resources")
    return out


@cache
def resources_dir() -> Path:
    tried = _candidates()
    for p in tried:
        if (p / "samples").is_dir():
            return p
    raise BitlensError(
        "Bitlens's resources (sample models) were not found; looked in "
        + ", ".join(str(p) for p in tried)
        + " (set BITLENS_RESOURCES to the folder that holds samples/)"
    )


def list_samples() -> list[Sample]:
    """The samples present, the default (image) first."""
    root = resources_dir() / "samples"
    names = sorted(
        (d.name for d in root.iterdir() if (d / "meta.json").is_file()),
        key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n),
    )
    return [_load(root / n) for n in names]


def get_sample(name: str) -> Sample:
    root = resources_dir() / "samples"
    if not (root / name / "meta.json").is_file():
        known = ", ".join(s.name for s in list_samples())
        raise BitlensError(f"no sample named {name!r}; the samples are: {known}")
    return _load(root / name)


def _load(folder: Path) -> Sample:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BitlensError(f"sample {folder.name}: unreadable meta.json ({exc})") from None
    return Sample(
        name=folder.name,
        title=str(meta.get("title", folder.name)),
        domain=str(meta.get("domain", "")),
        model_path=folder / "model.onnx",
        data_path=folder / "data.npz",
        meta=meta,
    )


def load_sample_data(sample: Sample) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Evaluation inputs (batched on axis 0, keyed by input name) and labels."""
    with np.load(sample.data_path, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    labels = arrays.pop("labels")
    return arrays, labels


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=-1) == labels))
