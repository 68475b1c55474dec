"""Arguments and loading shared by the headless subcommands."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import DataError
from bitlens.core.jsonsafe import dumps
from bitlens.core.model.loader import LoadedModel
from bitlens.core.model.types import ModelInfo


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        metavar="D",
        help="input data: .npz/.npy keyed by input name, a folder of images, a .wav file or "
        "folder; default: random inputs",
    )
    p.add_argument(
        "--samples", type=int, default=8, help="random samples when --data is absent (8)"
    )
    p.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="size of a dynamic input dimension for random data (repeatable)",
    )
    p.add_argument("--rate", type=int, default=16000, help="WAV sample rate to resample to (16000)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def add_target_argument(p: argparse.ArgumentParser) -> None:
    from bitlens.core.targets import DEFAULT_TARGET, TARGET_TITLES, TARGETS

    p.add_argument(
        "--target",
        choices=TARGETS,
        help="deployment target, which decides the tensors quantized besides layer inputs "
        f"(default: the plan file's, else {DEFAULT_TARGET}): "
        + "; ".join(f"{k}: {v}" for k, v in TARGET_TITLES.items()),
    )


def parse_dims(items: list[str]) -> dict[str, int]:
    dims = {}
    for item in items:
        name, sep, size = item.partition("=")
        if not sep or not size.isdigit():
            raise DataError(f"--dim expects NAME=SIZE, got {item!r}")
        dims[name] = int(size)
    return dims


def load_data(args: argparse.Namespace, info: ModelInfo) -> Dataset:
    if not args.data:
        return Dataset.random(info, n=args.samples, dims=parse_dims(args.dim))
    p = Path(args.data)
    if p.is_dir():
        if any(p.glob("*.wav")):
            return Dataset.from_wav(p, info, rate=args.rate)
        return Dataset.from_images(p, info)
    if p.suffix.lower() == ".wav":
        return Dataset.from_wav(p, info, rate=args.rate)
    return Dataset.from_npz(p, info)


def dump_json(obj: Any) -> str:
    return dumps(obj)


def fmt_db(x: float | None) -> str:
    if x is None:
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.1f}"


def fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def calibrated_engine(args: argparse.Namespace, model: LoadedModel) -> Engine:
    """An engine on ``--data`` for ``model``, calibrated with ``--calibration``."""
    engine = Engine(model, load_data(args, model.info), device=args.device)
    for _ in engine.calibrate(args.calibration):
        pass
    return engine
