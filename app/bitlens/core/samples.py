"""The sample models bundled with Bitlens (image, speech, text) and their evaluation data.

Each sample lives in ``resources/samples/<name>/`` as ``model.onnx`` (fp32, opset 17),
``data.npz`` (held-out inputs keyed by the model's input name, plus ``labels``) and
``meta.json`` (title, domain, class names, preprocessing, the float accuracy measured
with ONNX Runtime, and how it was built). ``resources/scripts/make_*.py`` rebuild them.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bitlens.core.errors import BitlensError, DataError

DEFAULT_SAMPLE = "digits_cnn"
# Menu order; the first one is what the app opens on.
_ORDER = ("digits_cnn", "speech_kws", "text_transformer")
_ENV = "BITLENS_RESOURCES"


@dataclass(frozen=True)
class Sample:
    """One bundled model with its held-out evaluation data."""

    name: str
    title: str
    domain: str  # "image" | "speech" | "text"
    model_path: Path
    data_path: Path
    meta: dict[str, Any]


def _candidates() -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    env = os.environ.get(_ENV)
    if env:
        # An explicit setting wins and is the only place looked, so a typo is reported
        # rather than silently falling back to another copy.
        return [(f"${_ENV}", Path(env))]
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        found.append(("PyInstaller bundle", Path(frozen) / "resources"))
    # app/bitlens/core/samples.py -> repository root
    found.append(("source tree", Path(__file__).resolve().parents[3] / "resources"))
    # A regular (non-editable) install puts them here (pyproject's data-files).
    found.append(("install prefix", Path(sys.prefix) / "share" / "bitlens" / "resources"))
    return found


def resources_dir() -> Path:
    """The folder holding ``samples/`` and ``icons/``.

    ``$BITLENS_RESOURCES`` if set, else the PyInstaller bundle's ``resources``,
    else ``<repo>/resources``, else ``<prefix>/share/bitlens/resources``.
    """
    tried = _candidates()
    for _, path in tried:
        if (path / "samples").is_dir():
            return path
    where = "; ".join(f"{label}: {path}" for label, path in tried)
    raise BitlensError(f"Bitlens resources folder not found (looked in {where})")


def _load_sample(name: str, folder: Path) -> Sample:
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BitlensError(f"sample {name!r}: cannot read {meta_path}: {exc}") from exc
    model_path, data_path = folder / "model.onnx", folder / "data.npz"
    for p in (model_path, data_path):
        if not p.is_file():
            raise BitlensError(f"sample {name!r}: missing file {p}")
    return Sample(
        name=name,
        title=str(meta.get("title", name)),
        domain=str(meta.get("domain", "")),
        model_path=model_path,
        data_path=data_path,
        meta=meta,
    )


def _sample_names(root: Path) -> list[str]:
    folder = root / "samples"
    if not folder.is_dir():
        raise BitlensError(f"no samples folder in the Bitlens resources (looked for {folder})")
    present = {p.name for p in folder.iterdir() if (p / "meta.json").is_file()}
    return [n for n in _ORDER if n in present] + sorted(present - set(_ORDER))


def list_samples() -> list[Sample]:
    """All bundled samples, the default (``digits_cnn``) first."""
    root = resources_dir()
    return [_load_sample(n, root / "samples" / n) for n in _sample_names(root)]


def get_sample(name: str) -> Sample:
    root = resources_dir()
    names = _sample_names(root)
    if name not in names:
        known = ", ".join(names) or "none"
        raise BitlensError(f"unknown sample {name!r}; known samples: {known}")
    return _load_sample(name, root / "samples" / name)


def load_sample_data(sample: Sample) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The sample's evaluation inputs (keyed by ONNX input name, batch on axis 0) and labels."""
    try:
        with np.load(sample.data_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"sample {sample.name!r}: cannot read {sample.data_path}: {exc}") from exc
    if "labels" not in arrays:
        raise DataError(f"sample {sample.name!r}: {sample.data_path} has no 'labels' array")
    labels = arrays.pop("labels")
    if not arrays:
        raise DataError(f"sample {sample.name!r}: {sample.data_path} holds no inputs")
    for key, arr in arrays.items():
        if arr.ndim == 0 or arr.shape[0] != labels.shape[0]:
            raise DataError(
                f"sample {sample.name!r}: input {key!r} has shape {arr.shape}, "
                f"expected {labels.shape[0]} samples on axis 0 to match the labels"
            )
    return arrays, labels


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy: the fraction of rows whose arg-max over the last axis is the label."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
        raise DataError(
            f"accuracy needs logits [N, classes] and labels [N]; got {logits.shape} "
            f"and {labels.shape}"
        )
    if labels.size == 0:
        raise DataError("accuracy of an empty evaluation set is undefined")
    return float(np.mean(np.argmax(logits, axis=-1) == labels))
