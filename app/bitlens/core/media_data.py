"""Datasets read from media files: a folder of images, WAV audio. The bodies of
:meth:`bitlens.core.data.Dataset.from_images` and ``from_wav`` (bound there as class
methods, so this module needs no import of ``data``): each shapes the media to the
model's input and hands the arrays to ``Dataset.from_arrays``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.datafiles import read_image, read_wav, resample
from bitlens.core.errors import DataError
from bitlens.core.image_shape import image_layout, image_size
from bitlens.core.limits import check_budget
from bitlens.core.model.types import ModelInfo, TensorInfo

if TYPE_CHECKING:
    from bitlens.core.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def images_dataset(
    cls: type[Dataset],
    folder: str | Path,
    info: ModelInfo,
    *,
    size: tuple[int, int] | None = None,
    layout: str | None = None,
    scale: float = 1 / 255,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
    input_name: str | None = None,
    calibration_fraction: float = 0.5,
    dims: Mapping[str, int] | None = None,
) -> Dataset:
    """Every image in ``folder`` (sorted by name), resized and normalized: ``(x*scale - mean)/std``.

    ``layout`` None: read from the input's shape; ``size`` None: the input's, else from
    ``dims`` (bitlens.core.image_shape)."""
    folder = Path(folder)
    files = (
        sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if folder.is_dir()
        else []
    )
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    target = _image_input(info, input_name)
    shape = target.shape or ()
    if len(shape) != 4:
        raise DataError(f"input {target.name!r} has shape {list(shape)}; images need a 4-D input")
    layout = (layout or image_layout(shape)).upper()
    if layout not in ("NCHW", "NHWC"):
        raise DataError(f"image layout must be NCHW or NHWC, not {layout!r}")
    c_dim = shape[1] if layout == "NCHW" else shape[3]
    channels = c_dim if isinstance(c_dim, int) else 3
    size = size or image_size(target, layout, dims)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise DataError(f"input {target.name!r} has {channels} channels; images give 1, 3 or 4")
    check_budget(len(files) * size[0] * size[1] * channels * 4,
                 f"{len(files)} images of {size[0]}x{size[1]}", DataError)  # fmt: skip
    imgs = [read_image(f, mode, size) for f in files]
    x = np.stack(imgs) * np.float32(scale)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    arrays = {target.name: x.astype(np.dtype(target.dtype))}
    others = [t for t in info.inputs if t.name != target.name]
    if others:
        raise DataError(
            f"the model has more inputs than the image input: {', '.join(t.name for t in others)}; "
            "use an .npz with all of them"
        )
    return cls.from_arrays(
        info,
        arrays,
        calibration_fraction=calibration_fraction,
        source=f"{folder.name}/ ({len(files)} images)",
    )


def wav_dataset(
    cls: type[Dataset],
    path: str | Path,
    info: ModelInfo,
    *,
    rate: int = 16000,
    frame: int | None = None,
    input_name: str | None = None,
    calibration_fraction: float = 0.5,
) -> Dataset:
    """WAV files (one file or a folder), mixed to mono, resampled, cut into frames.

    Each frame of ``frame`` samples (default: the input's last dimension)
    becomes one sample, shaped to the input (e.g. ``[1, frame]``).
    """
    p = Path(path)
    files = sorted(p.glob("*.wav")) if p.is_dir() else [p]
    if not files or not all(f.is_file() for f in files):
        raise DataError(f"{p}: no WAV files found")
    target = _image_input(info, input_name)
    shape = list(target.shape or ())
    if frame is None:
        if not shape or not isinstance(shape[-1], int):
            raise DataError(
                f"input {target.name!r} has a dynamic last dimension; give a frame length"
            )
        frame = int(shape[-1])
    frames = []
    for f in files:
        samples, file_rate = read_wav(f)
        audio = resample(samples, file_rate, rate)
        for start in range(0, len(audio) - frame + 1, frame):
            frames.append(audio[start : start + frame])
    if not frames:
        raise DataError(f"{p.name}: audio shorter than one frame of {frame} samples")
    x = np.stack(frames).astype(np.float32)
    rank = len(shape)
    x = x.reshape(len(frames), *([1] * max(rank - 2, 0)), frame) if rank >= 2 else x
    return cls.from_arrays(
        info,
        {target.name: x},
        calibration_fraction=calibration_fraction,
        source=f"{p.name} ({len(frames)} frames)",
    )


def _image_input(info: ModelInfo, name: str | None) -> TensorInfo:
    floats = [t for t in info.inputs if np.dtype(t.dtype).kind == "f"]
    if name is not None:
        for t in info.inputs:
            if t.name == name:
                return t
        raise DataError(f"model has no input {name!r}")
    if not floats:
        raise DataError("the model has no float input to feed")
    return floats[0]
