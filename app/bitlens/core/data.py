"""Input data for calibration and evaluation.

A :class:`Dataset` is a tuple of ready-to-run feeds (one dict of input
name -> array per batch), checked against the model's inputs when built,
plus which feeds calibrate and which evaluate. Sources: random data shaped
from the model inputs, ``.npy``/``.npz`` files keyed by input name, a folder
of images, WAV audio. Models with several inputs and state inputs are fed
like any other: every input needs an array.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitlens.core.datafiles import check_labels, read_arrays, read_image, read_wav, resample
from bitlens.core.errors import DataError
from bitlens.core.limits import check_budget
from bitlens.core.model.types import ModelInfo, TensorInfo

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_BATCH = 32
LABELS_KEY = "labels"


@dataclass(frozen=True)
class Dataset:
    samples: tuple[dict[str, np.ndarray], ...]
    labels: np.ndarray | None = None
    calibration: tuple[int, ...] = ()
    evaluation: tuple[int, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if not self.samples:
            raise DataError("the dataset has no samples")
        if not self.calibration or not self.evaluation:
            cal, ev = split_indices(len(self.samples))
            object.__setattr__(self, "calibration", self.calibration or cal)
            object.__setattr__(self, "evaluation", self.evaluation or ev)

    @property
    def eval_labels(self) -> np.ndarray | None:
        """Labels of the evaluation feeds, concatenated in feed order."""
        if self.labels is None:
            return None
        bounds = np.cumsum([0, *(batch_of(s) for s in self.samples)])
        return np.concatenate([self.labels[bounds[i] : bounds[i + 1]] for i in self.evaluation])

    # -- sources -----------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        info: ModelInfo,
        arrays: Mapping[str, np.ndarray],
        labels: np.ndarray | None = None,
        *,
        calibration_fraction: float = 0.5,
        source: str = "arrays",
    ) -> Dataset:
        """Arrays keyed by input name, samples along axis 0, batched for the model."""
        inputs = {t.name: t for t in info.inputs}
        missing = [n for n in inputs if n not in arrays]
        if missing:
            raise DataError(f"{source}: no data for model input(s) {', '.join(map(repr, missing))}")
        unknown = [k for k in arrays if k not in inputs and k != LABELS_KEY]
        if unknown:
            raise DataError(
                f"{source}: {', '.join(map(repr, unknown))} is not a model input "
                f"(inputs: {', '.join(inputs)})"
            )
        arrays = {k: _coerce(inputs[k], np.asarray(arrays[k]), source) for k in inputs}
        counts = {k: _n_samples(inputs[k], a) for k, a in arrays.items()}
        if len(set(counts.values())) != 1:
            raise DataError(f"{source}: inputs hold different numbers of samples: {counts}")
        n = next(iter(counts.values()))
        if labels is not None and len(labels) != n:
            raise DataError(f"{source}: {len(labels)} labels for {n} samples")
        batch = MAX_BATCH if all(_batch_dynamic(inputs[k], a) for k, a in arrays.items()) else 1
        # Split samples first, then batch each part: calibration and evaluation never share a feed.
        n_cal = split_count(n, calibration_fraction)
        feeds: list[dict[str, np.ndarray]] = []
        cal: list[int] = []
        ev: list[int] = []
        for lo, hi, part in ((0, n_cal, cal), (n_cal, n, ev)):
            for start in range(lo, hi, batch):
                stop = min(start + batch, hi)
                part.append(len(feeds))
                feeds.append({k: _slice(inputs[k], a, start, stop) for k, a in arrays.items()})
        if n == 1:
            ev = cal
        return cls(tuple(feeds), labels, tuple(cal), tuple(ev), source)

    @classmethod
    def random(
        cls, info: ModelInfo, n: int = 8, dims: Mapping[str, int] | None = None, seed: int = 0
    ) -> Dataset:
        """``n`` samples of random data shaped from the model's inputs.

        Float inputs are standard normal; integer inputs feeding an embedding
        are uniform token ids below its vocabulary size; ``dims`` gives sizes
        for symbolic dimensions (a leading unnamed/unknown dim is the batch).
        """
        if n < 1:
            raise DataError(f"the number of random samples must be at least 1, not {n}")
        rng = np.random.default_rng(seed)
        vocab = _vocab_sizes(info)
        arrays: dict[str, np.ndarray] = {}
        for t in info.inputs:
            shape = _concrete_shape(t, dict(dims or {}))
            full = (n, *shape[1:]) if shape else (n,)
            dt = np.dtype(t.dtype)
            nbytes = int(np.prod(full, dtype=object)) * dt.itemsize
            check_budget(nbytes, f"random data for input {t.name!r} of shape {list(full)}", DataError)
            if dt.kind == "f":
                arrays[t.name] = rng.standard_normal(full).astype(dt)
            elif dt.kind in "iu":
                arrays[t.name] = rng.integers(0, vocab.get(t.name, 10), size=full).astype(dt)
            elif dt.kind == "b":
                arrays[t.name] = rng.integers(0, 2, size=full).astype(bool)
            else:
                raise DataError(f"input {t.name!r}: cannot generate random data of type {t.dtype}")
        return cls.from_arrays(info, arrays, source=f"random ({n} samples, seed {seed})")

    @classmethod
    def from_npz(
        cls, path: str | Path, info: ModelInfo, *, calibration_fraction: float = 0.5
    ) -> Dataset:
        """``.npz`` keyed by input name (optional ``labels``), or ``.npy`` for a one-input model."""
        p = Path(path)
        loaded = read_arrays(p)  # safe: regular file, sizes checked before reading, no pickles
        if isinstance(loaded, np.ndarray):
            if len(info.inputs) != 1:
                raise DataError(
                    f"{p.name}: a .npy file feeds one input, but the model has {len(info.inputs)}; "
                    "use an .npz keyed by input name"
                )
            arrays = {info.inputs[0].name: loaded}
        else:
            arrays = loaded
        labels = arrays.pop(LABELS_KEY, None)
        if labels is not None:
            labels = check_labels(labels, None, p.name)
        return cls.from_arrays(
            info, arrays, labels, calibration_fraction=calibration_fraction, source=p.name
        )

    @classmethod
    def from_images(
        cls,
        folder: str | Path,
        info: ModelInfo,
        *,
        size: tuple[int, int] | None = None,
        layout: str = "NCHW",
        scale: float = 1 / 255,
        mean: float | Sequence[float] = 0.0,
        std: float | Sequence[float] = 1.0,
        input_name: str | None = None,
    ) -> Dataset:
        """Every image in ``folder`` (sorted by name), resized and normalized: ``(x*scale - mean)/std``."""
        folder = Path(folder)
        files = (
            sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if folder.is_dir()
            else []
        )
        if not files:
            raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        target = _image_input(info, input_name)
        layout = layout.upper()
        if layout not in ("NCHW", "NHWC"):
            raise DataError(f"image layout must be NCHW or NHWC, not {layout!r}")
        shape = target.shape or ()
        if len(shape) != 4:
            raise DataError(
                f"input {target.name!r} has shape {list(shape)}; images need a 4-D input"
            )
        c_dim = shape[1] if layout == "NCHW" else shape[3]
        hw = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
        channels = c_dim if isinstance(c_dim, int) else 3
        if size is None:
            if not all(isinstance(d, int) for d in hw):
                raise DataError(
                    f"input {target.name!r} has dynamic height/width; give an image size"
                )
            size = (int(hw[0]), int(hw[1]))  # type: ignore[arg-type]
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
        return cls.from_arrays(info, arrays, source=f"{folder.name}/ ({len(files)} images)")

    @classmethod
    def from_wav(
        cls,
        path: str | Path,
        info: ModelInfo,
        *,
        rate: int = 16000,
        frame: int | None = None,
        input_name: str | None = None,
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
        return cls.from_arrays(info, {target.name: x}, source=f"{p.name} ({len(frames)} frames)")


def split_indices(
    n: int, calibration_fraction: float = 0.5
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """First part calibrates, the rest evaluates; with one feed it does both."""
    if n <= 1:
        return (0,), (0,)
    k = split_count(n, calibration_fraction)
    return tuple(range(k)), tuple(range(k, n))


def split_count(n: int, calibration_fraction: float = 0.5) -> int:
    """How many of ``n`` samples calibrate: at least one, and one left to evaluate when n > 1."""
    if n <= 1:
        return n
    return min(max(1, round(n * calibration_fraction)), n - 1)


# -- helpers -------------------------------------------------------------------------------
def _coerce(t: TensorInfo, a: np.ndarray, source: str) -> np.ndarray:
    want = np.dtype(t.dtype)
    if a.dtype == want:
        return a
    if a.dtype.kind == want.kind or (a.dtype.kind in "iu" and want.kind in "iu"):
        return a.astype(want)
    raise DataError(f"{source}: input {t.name!r} expects {want.name}, given {a.dtype.name}")


def _n_samples(t: TensorInfo, a: np.ndarray) -> int:
    rank = len(t.shape) if t.shape is not None else a.ndim
    if a.ndim not in (rank, rank + 1):
        raise DataError(
            f"input {t.name!r} expects shape {_fmt_shape(t)}, given {list(a.shape)} "
            f"(rank {a.ndim} instead of {rank})"
        )
    if t.shape and any(d == 0 for d in t.shape if isinstance(d, int)):
        raise DataError(f"input {t.name!r} has shape {_fmt_shape(t)}: an empty input cannot be fed")
    # With an extra sample axis each sample has the input's full shape.
    per_sample = a.shape[1:]
    expected = (t.shape or ())[1:] if a.ndim == rank else (t.shape or ())
    fixed_batch = a.ndim == rank and t.shape and isinstance(t.shape[0], int) and t.shape[0] != 1
    # a fixed batch larger than one: samples come in whole batches
    if fixed_batch and a.shape[0] % t.shape[0]:  # type: ignore[index,operator]
            raise DataError(
                f"input {t.name!r} has a fixed batch of {t.shape[0]}; given {a.shape[0]} rows"
            )
    for got, want in zip(per_sample, expected, strict=False):
        if isinstance(want, int) and want != got:
            raise DataError(
                f"input {t.name!r} expects shape {_fmt_shape(t)}, given {list(a.shape)}"
            )
    if a.ndim == rank + 1:
        return a.shape[0]
    fixed = t.shape[0] if t.shape and isinstance(t.shape[0], int) else 1
    return a.shape[0] // fixed if fixed > 1 else a.shape[0]


def _batch_dynamic(t: TensorInfo, a: np.ndarray) -> bool:
    rank = len(t.shape) if t.shape is not None else a.ndim
    return a.ndim == rank and bool(t.shape) and not isinstance(t.shape[0], int)  # type: ignore[index]


def _slice(t: TensorInfo, a: np.ndarray, start: int, stop: int) -> np.ndarray:
    rank = len(t.shape) if t.shape is not None else a.ndim
    if a.ndim == rank + 1:  # an extra sample axis: feed one sample as is
        return np.ascontiguousarray(a[start])
    fixed = t.shape[0] if t.shape and isinstance(t.shape[0], int) else 1
    return np.ascontiguousarray(a[start * fixed : stop * fixed])


def batch_of(feed: Mapping[str, np.ndarray]) -> int:
    first = next(iter(feed.values()))
    return int(first.shape[0]) if first.ndim else 1


def _fmt_shape(t: TensorInfo) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in (t.shape or ())) + "]"


def _concrete_shape(t: TensorInfo, dims: dict[str, int]) -> tuple[int, ...]:
    if t.shape is None:
        raise DataError(f"input {t.name!r} has unknown rank; provide data from a file")
    out = []
    for i, d in enumerate(t.shape):
        if isinstance(d, int):
            out.append(d)
        elif isinstance(d, str) and d in dims:
            out.append(int(dims[d]))
        elif i == 0:
            out.append(1)  # the batch dimension
        else:
            raise DataError(
                f"input {t.name!r} has dynamic dimension {d or '?'!r} at axis {i}; give its size"
            )
    return tuple(out)


def _vocab_sizes(info: ModelInfo) -> dict[str, int]:
    """Input name -> vocabulary size, for integer inputs that index an embedding."""
    out: dict[str, int] = {}
    for layer in info.layers:
        if layer.op_type == "Gather" and layer.weights and len(layer.inputs) > 1:
            out[layer.inputs[1]] = layer.weights[0].shape[0]
    return out


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
