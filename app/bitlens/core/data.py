"""Input data for calibration and evaluation.

A :class:`Dataset` is a tuple of ready-to-run feeds (one dict of input
name -> array per batch), checked against the model's inputs when built,
plus which feeds calibrate and which evaluate. Sources: random data shaped
from the model inputs, ``.npy``/``.npz`` files keyed by input name, an
``.npz`` of numbered feeds or a folder of ``.npz``/``.npy`` feeds whose
shapes may differ (batched by equal shape, never padded: padding would
change the calibration statistics), a folder of images, WAV audio. Models
with several inputs and state inputs are fed like any other: every input
needs an array.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path

import numpy as np

from bitlens.core.data_summary import DataSummary, part_summary
from bitlens.core.datafiles import check_labels, read_arrays
from bitlens.core.dims import concrete_shape
from bitlens.core.errors import DataError
from bitlens.core.feed_arrays import (
    LABELS_KEY,
    MAX_BATCH,
    batch_dynamic,
    batch_of,
    batches,
    check_names,
    coerce,
    feed_array,
    join_rows,
    n_samples,
    one_row_per_run,
    slice_rows,
)
from bitlens.core.input_ranges import index_ranges, is_mask, mask_inputs, sequence_lengths
from bitlens.core.limits import check_budget
from bitlens.core.media_data import images_dataset, wav_dataset
from bitlens.core.model.types import ModelInfo

FEED_SUFFIXES = (".npz", ".npy")
ROWS_MIX_NOTE = (
    "the model does not keep rows apart along axis 0 (a sample's outputs change, or lose "
    "their rows, when others run beside it), so every sample and feed runs alone"
)
_FEED_KEY = re.compile(r"(.+)/(\d+)")  # NAME/INDEX: one of several feeds in one .npz


@dataclass(frozen=True)
class Dataset:
    """Feeds (one dict of input name -> array per model run) and which of them calibrate
    and which evaluate. ``labels`` holds every feed's rows' labels, concatenated in feed
    order; ``split`` says in words how the feeds were divided; ``generated`` marks random
    evaluation inputs (errors on noise can mislead, so every front end says so)."""

    samples: tuple[dict[str, np.ndarray], ...]
    labels: np.ndarray | None = None
    calibration: tuple[int, ...] = ()
    evaluation: tuple[int, ...] = ()
    source: str = ""
    split: str = ""
    generated: bool = False
    # Per feed, the rows of each unit (sample or given feed) joined into it along axis 0;
    # () where none were joined. rows_apart() undoes the joins for a model whose axis 0
    # is no batch axis (engine/row_mixing.py).
    parts: tuple[tuple[int, ...], ...] = ()
    rows_mix: bool = False  # the model mixes rows along axis 0: every unit runs alone

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

    def summary(self) -> DataSummary:
        """What calibrates and what evaluates, for the CLI and the window to show."""
        return DataSummary(
            self.source,
            self.split,
            self.generated,
            part_summary(self.samples, self.calibration),
            part_summary(self.samples, self.evaluation),
        )

    def rows_apart(self) -> Dataset:
        """This dataset with every joined feed split back into its units, in order (the
        labels, one per row, keep their order), and ``rows_mix`` set."""
        samples: list[dict[str, np.ndarray]] = []
        index: list[list[int]] = []
        for i, feed in enumerate(self.samples):
            sizes = self.parts[i] if i < len(self.parts) and self.parts[i] else (batch_of(feed),)
            bounds = np.cumsum([0, *sizes])
            mine = []
            for lo, hi in pairwise(bounds):
                mine.append(len(samples))
                samples.append(
                    feed if len(sizes) == 1 else {k: v[lo:hi] for k, v in feed.items()}
                )
            index.append(mine)
        return replace(
            self,
            samples=tuple(samples),
            calibration=tuple(j for i in self.calibration for j in index[i]),
            evaluation=tuple(j for i in self.evaluation for j in index[i]),
            parts=(),
            rows_mix=True,
            split=f"{self.split}; {ROWS_MIX_NOTE}",
        )

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
        check_names(inputs, arrays, source)
        arrays = {k: coerce(inputs[k], np.asarray(arrays[k]), source) for k in inputs}
        counts = {k: n_samples(inputs[k], a) for k, a in arrays.items()}
        if len(set(counts.values())) != 1:
            raise DataError(f"{source}: inputs hold different numbers of samples: {counts}")
        n = next(iter(counts.values()))
        if labels is not None:
            labels = check_labels(labels, None, source)
        if labels is not None and len(labels) != n:
            raise DataError(f"{source}: {len(labels)} labels for {n} samples")
        batch = MAX_BATCH if all(batch_dynamic(inputs[k], a) for k, a in arrays.items()) else 1
        batch = 1 if one_row_per_run(info.inputs, info.outputs) else batch
        # Split samples first, then batch each part: calibration and evaluation never share
        # a feed. One shape throughout, so batches are slices (views, no copies).
        n_cal = split_count(n, calibration_fraction)
        feeds: list[dict[str, np.ndarray]] = []
        parts: list[tuple[int, ...]] = []
        cal: list[int] = []
        ev: list[int] = []
        for lo, hi, part in ((0, n_cal, cal), (n_cal, n, ev)):
            for start in range(lo, hi, batch):
                stop = min(start + batch, hi)
                part.append(len(feeds))
                feeds.append({k: slice_rows(inputs[k], a, start, stop) for k, a in arrays.items()})
                parts.append((1,) * (stop - start) if batch > 1 else ())
        if n == 1:
            ev = cal
        split = _split_text(n, n_cal, calibration_fraction, "samples")
        return cls(tuple(feeds), labels, tuple(cal), tuple(ev), source, split, parts=tuple(parts))

    @classmethod
    def from_feeds(
        cls,
        info: ModelInfo,
        feeds: Sequence[Mapping[str, np.ndarray]],
        labels: Sequence[np.ndarray | None] | None = None,
        *,
        calibration_fraction: float = 0.5,
        source: str = "feeds",
        names: Sequence[str] | None = None,
    ) -> Dataset:
        """One model run per feed, each keyed by input name, shapes free where the model's
        are dynamic (OCR lines of different widths). Feeds of equal shape are batched
        together along a dynamic batch axis; nothing is ever padded. ``labels`` gives each
        feed's labels (one per batch row); ``names`` name the feeds in errors."""
        if not feeds:
            raise DataError(f"{source}: no feeds")
        inputs = {t.name: t for t in info.inputs}
        units = []
        for i, feed in enumerate(feeds):
            where = f"{source}: {names[i] if names else f'feed {i}'}"
            check_names(inputs, feed, where)
            units.append({k: feed_array(inputs[k], np.asarray(feed[k]), where) for k in inputs})
        given = [] if labels is None else list(labels)
        if given and len(given) != len(units):
            raise DataError(f"{source}: {len(given)} label arrays for {len(units)} feeds")
        if given and any(lab is None for lab in given) and any(lab is not None for lab in given):
            missing = [names[i] if names else f"feed {i}" for i, g in enumerate(given) if g is None]
            raise DataError(f"{source}: labels are missing for {', '.join(missing[:5])}")
        feed_labels: list[np.ndarray | None] = [None] * len(units)
        if given and given[0] is not None:
            for i, (unit, lab) in enumerate(zip(units, given, strict=True)):
                lab = np.atleast_1d(np.asarray(lab))
                if len(lab) != batch_of(unit):
                    where = names[i] if names else f"feed {i}"
                    raise DataError(
                        f"{source}: {where} has {len(lab)} labels for {batch_of(unit)} rows"
                    )
                feed_labels[i] = lab
        return cls._assemble(info, units, feed_labels, calibration_fraction, source, "feeds")

    @classmethod
    def _assemble(
        cls,
        info: ModelInfo,
        units: list[dict[str, np.ndarray]],
        labels: list[np.ndarray | None],
        calibration_fraction: float,
        source: str,
        what: str,
    ) -> Dataset:
        """Split the units first, then batch each part: calibration and evaluation never
        share a feed, and only units of equal shape share a batch."""
        n = len(units)
        n_cal = split_count(n, calibration_fraction)
        batchable = all(t.shape and not isinstance(t.shape[0], int) for t in info.inputs)
        batchable = batchable and not one_row_per_run(info.inputs, info.outputs)
        feeds: list[dict[str, np.ndarray]] = []
        parts: list[tuple[int, ...]] = []
        rows: list[np.ndarray] = []
        cal: list[int] = []
        ev: list[int] = []
        for lo, hi, part in ((0, n_cal, cal), (n_cal, n, ev)):
            for group in batches(units[lo:hi], batchable):
                part.append(len(feeds))
                members = [units[lo + j] for j in group]
                parts.append(tuple(batch_of(m) for m in members) if len(members) > 1 else ())
                feeds.append(
                    {k: join_rows([m[k] for m in members]) for k in members[0]}
                    if len(members) > 1
                    else members[0]
                )
                if labels[0] is not None:
                    rows.extend(labels[lo + j] for j in group)  # type: ignore[misc]
        if n == 1:
            ev = cal
        all_labels = np.concatenate(rows) if rows else None
        split = _split_text(n, n_cal, calibration_fraction, what)
        return cls(
            tuple(feeds), all_labels, tuple(cal), tuple(ev), source, split, parts=tuple(parts)
        )

    @classmethod
    def separate(cls, calibration: Dataset, evaluation: Dataset) -> Dataset:
        """Every feed of ``calibration`` calibrates and every feed of ``evaluation``
        evaluates (``--calib-data`` and ``--eval-data``)."""
        k = len(calibration.samples)
        labels = None
        if evaluation.labels is not None:
            # Calibration rows' labels are never read (see eval_labels); zeros keep the
            # one-array-for-all-rows layout when only the evaluation data have labels.
            cal_rows = sum(batch_of(s) for s in calibration.samples)
            cal_labels = calibration.labels
            if cal_labels is None or cal_labels.shape[1:] != evaluation.labels.shape[1:]:
                cal_labels = np.zeros(
                    (cal_rows, *evaluation.labels.shape[1:]), evaluation.labels.dtype
                )
            labels = np.concatenate([cal_labels, evaluation.labels])
        return cls(
            calibration.samples + evaluation.samples,
            labels,
            tuple(range(k)),
            tuple(range(k, k + len(evaluation.samples))),
            f"{calibration.source} (calibration), {evaluation.source} (evaluation)",
            "separate calibration and evaluation data",
            evaluation.generated,
            parts=_parts_of(calibration) + _parts_of(evaluation),
        )

    def reused(self, role: str) -> Dataset:
        """All feeds both calibrate and evaluate: the only data given were for ``role``."""
        every = tuple(range(len(self.samples)))
        other = "evaluation" if role == "calibration" else "calibration"
        return replace(
            self,
            calibration=every,
            evaluation=every,
            split=f"only {role} data given: its {len(every)} feeds also serve for {other}",
        )

    @classmethod
    def random(
        cls,
        info: ModelInfo,
        n: int = 8,
        dims: Mapping[str, int] | None = None,
        seed: int = 0,
        *,
        calibration_fraction: float = 0.5,
        values: Mapping[str, int] | None = None,
    ) -> Dataset:
        """``n`` samples of random data shaped from the model's inputs.

        Float inputs are standard normal; integer inputs feeding an embedding
        are uniform token ids below its vocabulary size (or a one-hot's depth); integer or boolean masks
        (named ``*mask*``) are all ones; ``dims`` gives sizes
        for dynamic dimensions (see :mod:`bitlens.core.dims`; a dynamic axis 0
        is the batch); ``values`` fixes integer inputs the model needs a given value in
        (:func:`bitlens.core.input_values.compared_constants`).
        """
        if n < 1:
            raise DataError(f"the number of random samples must be at least 1, not {n}")
        rng = np.random.default_rng(seed)
        vocab, masks = index_ranges(info), mask_inputs(info)
        lengths = sequence_lengths(info, dims or {})
        arrays: dict[str, np.ndarray] = {}
        for t in info.inputs:
            shape = concrete_shape(t, dict(dims or {}))
            fixed = bool(t.shape) and isinstance(t.shape[0], int) and t.shape[0] != 1
            # Samples along a new axis 0 when the input's own axis 0 is fixed above 1: that
            # axis is no batch (silero-vad's LSTM state is [2, batch, 128]), keep all of it.
            full = (n, *shape) if fixed else (n, *shape[1:]) if shape else (n,)
            dt = np.dtype(t.dtype)
            nbytes = int(np.prod(full, dtype=object)) * dt.itemsize
            check_budget(nbytes, f"random data for input {t.name!r} of shape {list(full)}", DataError)
            if dt.kind == "f":
                arrays[t.name] = rng.standard_normal(full).astype(dt)
            elif dt.kind in "iu" and values and t.name in values:
                arrays[t.name] = np.full(full, values[t.name], dtype=dt)
            elif dt.kind in "iu" and t.name in lengths:
                arrays[t.name] = np.full(full, lengths[t.name], dtype=dt)
            elif dt.kind in "iub" and (is_mask(t.name) or t.name in masks):
                arrays[t.name] = np.ones(full, dtype=dt)
            elif dt.kind in "iu":
                arrays[t.name] = rng.integers(0, vocab.get(t.name, 10), size=full).astype(dt)
            elif dt.kind == "b":
                arrays[t.name] = rng.integers(0, 2, size=full).astype(bool)
            else:
                raise DataError(f"input {t.name!r}: cannot generate random data of type {t.dtype}")
        ds = cls.from_arrays(
            info,
            arrays,
            calibration_fraction=calibration_fraction,
            source=f"random inputs ({n} samples, seed {seed})",
        )
        return replace(ds, generated=True)

    @classmethod
    def from_npz(
        cls, path: str | Path, info: ModelInfo, *, calibration_fraction: float = 0.5
    ) -> Dataset:
        """``.npz`` keyed by input name (optional ``labels``), samples along axis 0; or an
        ``.npz`` of several feeds per input under ``NAME/0``, ``NAME/1``... (``labels/0``...),
        shapes free; or ``.npy`` for a one-input model."""
        p = Path(path)
        arrays = read_feed_file(p, info)
        if any(_FEED_KEY.fullmatch(k) for k in arrays):
            feeds, labels = _numbered_feeds(arrays, p.name)
            return cls.from_feeds(
                info, feeds, labels if any(x is not None for x in labels) else None,
                calibration_fraction=calibration_fraction,
                source=f"{p.name} ({len(feeds)} feeds)",
                names=[f"feed {i}" for i in range(len(feeds))],
            )  # fmt: skip
        labels = arrays.pop(LABELS_KEY, None)
        return cls.from_arrays(
            info, arrays, labels, calibration_fraction=calibration_fraction, source=p.name
        )

    @classmethod
    def from_folder(
        cls, folder: str | Path, info: ModelInfo, *, calibration_fraction: float = 0.5
    ) -> Dataset:
        """A folder of ``.npz``/``.npy`` files, one feed per file (sorted by name), each keyed
        by input name with an optional ``labels`` array; shapes may differ between files."""
        folder = Path(folder)
        files = sorted(
            (f for f in folder.iterdir() if f.suffix.lower() in FEED_SUFFIXES and f.is_file()),
            key=_natural,
        ) if folder.is_dir() else []  # fmt: skip
        if not files:
            raise DataError(f"{folder}: no .npz or .npy feeds found")
        feeds, labels = [], []
        for f in files:
            arrays = read_feed_file(f, info)
            if any(_FEED_KEY.fullmatch(k) for k in arrays):
                raise DataError(
                    f"{folder.name}/{f.name}: numbered keys (NAME/0...) in a folder; "
                    "a folder holds one feed per file"
                )
            labels.append(arrays.pop(LABELS_KEY, None))
            feeds.append(arrays)
        return cls.from_feeds(
            info, feeds, labels if any(x is not None for x in labels) else None,
            calibration_fraction=calibration_fraction,
            source=f"{folder.name}/ ({len(files)} feeds)",
            names=[f.name for f in files],
        )  # fmt: skip

    # images and WAV audio, shaped to the input (media_data.py)
    from_images = classmethod(images_dataset)
    from_wav = classmethod(wav_dataset)


def load_path(
    path: str | Path,
    info: ModelInfo,
    *,
    rate: int = 16000,
    calibration_fraction: float = 0.5,
    dims: Mapping[str, int] | None = None,
) -> Dataset:
    """Data from one path, its kind read from what it is: a folder of ``.wav`` files, of
    ``.npz``/``.npy`` feeds or of images; a ``.wav`` file; an ``.npz``/``.npy`` file."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such data file or folder")
    fraction = calibration_fraction
    if p.is_dir():
        if any(p.glob("*.wav")):
            return Dataset.from_wav(p, info, rate=rate, calibration_fraction=fraction)
        if any(f.suffix.lower() in FEED_SUFFIXES for f in p.iterdir()):
            return Dataset.from_folder(p, info, calibration_fraction=fraction)
        return Dataset.from_images(p, info, calibration_fraction=fraction, dims=dims)
    if p.suffix.lower() == ".wav":
        return Dataset.from_wav(p, info, rate=rate, calibration_fraction=fraction)
    return Dataset.from_npz(p, info, calibration_fraction=calibration_fraction)


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


# -- reading feed files --------------------------------------------------------------------
def read_feed_file(path: Path, info: ModelInfo) -> dict[str, np.ndarray]:
    """The arrays of one ``.npz`` (by key) or ``.npy`` (keyed by a one-input model's input)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such data file")
    arrays = _load_arrays(p)
    if isinstance(arrays, np.ndarray):
        if len(info.inputs) != 1:
            raise DataError(
                f"{p.name}: a .npy file feeds one input, but the model has {len(info.inputs)}; "
                "use an .npz keyed by input name"
            )
        return {info.inputs[0].name: arrays}
    return arrays


def _load_arrays(p: Path) -> dict[str, np.ndarray] | np.ndarray:
    """An ``.npz`` as a dict of arrays, an ``.npy`` as one array (never unpickling).

    Regular files only, with every declared size checked against the file and the
    memory budget before reading (:mod:`bitlens.core.datafiles`)."""
    return read_arrays(p)


def _numbered_feeds(
    arrays: Mapping[str, np.ndarray], source: str
) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray | None]]:
    """``NAME/0``, ``NAME/1``... keys to a list of feeds (and ``labels/I`` to their labels)."""
    plain = [k for k in arrays if not _FEED_KEY.fullmatch(k)]
    if plain:
        raise DataError(
            f"{source}: mixes numbered feeds (NAME/0...) with plain arrays "
            f"({', '.join(map(repr, plain[:5]))}); use one form"
        )
    by_index: dict[int, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        m = _FEED_KEY.fullmatch(key)
        assert m is not None
        by_index.setdefault(int(m.group(2)), {})[m.group(1)] = value
    indices = sorted(by_index)
    if indices != list(range(len(indices))):
        gaps = sorted(set(range(indices[-1] + 1)) - set(indices))
        raise DataError(f"{source}: feed numbers skip {', '.join(map(str, gaps[:5]))}")
    feeds = [by_index[i] for i in indices]
    labels = [f.pop(LABELS_KEY, None) for f in feeds]
    return feeds, labels


def _natural(p: Path) -> list[object]:
    """Sort key putting line2 before line10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _split_text(n: int, n_cal: int, fraction: float, what: str) -> str:
    if n == 1:
        return f"the one {what[:-1]} both calibrates and evaluates"
    return (
        f"the first {n_cal} of {n} {what} calibrate, the other {n - n_cal} evaluate "
        f"(calibration fraction {fraction:g})"
    )


def _parts_of(data: Dataset) -> tuple[tuple[int, ...], ...]:
    """``data.parts``, one entry per feed (() for a feed joined from nothing)."""
    return tuple(data.parts[i] if i < len(data.parts) else () for i in range(len(data.samples)))
