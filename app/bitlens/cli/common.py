"""Arguments and loading shared by the headless subcommands."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bitlens.cli.progress import follow
from bitlens.core.compare import db_text
from bitlens.core.data import ROWS_MIX_NOTE, Dataset, load_path
from bitlens.core.dims import MissingDimension, needed_dims
from bitlens.core.engine import Engine
from bitlens.core.errors import BitlensError, DataError, EngineError, ModelLoadError
from bitlens.core.input_values import compared_constants
from bitlens.core.jsonsafe import dumps
from bitlens.core.limits import ACTIVATION_SHARE, ENV_BUDGET, parse_size, set_memory_budget
from bitlens.core.model.loader import LoadedModel, load_model
from bitlens.core.model.types import ModelInfo
from bitlens.core.units import format_bytes

DATA_FORMS = (
    ".npz/.npy keyed by input name (samples along axis 0), an .npz of numbered feeds "
    "(NAME/0, NAME/1...), a folder of .npz/.npy feeds (one per file, shapes may differ), "
    "a folder of images, or a .wav file or folder"
)


KEEP_BN_HELP = (
    "keep each BatchNormalization, and each Mul or Add of a per-channel constant, after a Conv as "
    "the file has it (default: fold it into the Conv's weight and bias in memory, as ONNX "
    "Runtime does, so the activation after it can run as an integer kernel), and each "
    "HardSwish op (default: written as x * Clip(x + 3, 0, 6) / 6, which ONNX Runtime runs "
    "on integer kernels)"
)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep-batchnorm", action="store_true", help=KEEP_BN_HELP)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument(
        "--data",
        metavar="D",
        help=f"input data, split into calibration and evaluation feeds (see --calib-fraction): "
        f"{DATA_FORMS}; default: random inputs",
    )
    p.add_argument(
        "--calib-data",
        metavar="D",
        help="data that only calibrate (every feed); alone, they also evaluate",
    )
    p.add_argument(
        "--eval-data",
        metavar="D",
        help="data that only evaluate (every feed); alone, they also calibrate",
    )
    p.add_argument(
        "--calib-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="share of --data (or random) feeds that calibrate, the first ones; the rest "
        "evaluate (0.5)",
    )
    p.add_argument(
        "--samples", type=int, default=8, help="random samples when no data are given (8)"
    )
    p.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="size of a dynamic input dimension for random inputs (and the height and width "
        "a folder of images is resized to), by its name, or INPUT:AXIS for an unnamed one "
        "(repeatable)",
    )
    p.add_argument("--rate", type=int, default=16000, help="WAV sample rate to resample to (16000)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument(
        "--memory-budget",
        default=None,
        metavar="SIZE",
        help="memory Bitlens plans for, e.g. 4G or 512M (a plain number: MiB): no tensor or "
        f"data file is decoded beyond it and 1/{ACTIVATION_SHARE} of it holds float reference "
        "activations, the rest spilled to a temporary memory-mapped file (default: "
        f"${ENV_BUDGET}, else half the physical memory)",
    )


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
        name, sep, size = item.rpartition("=")
        if not sep or not name or not size.isdigit() or int(size) < 1:
            raise DataError(f"--dim expects NAME=SIZE with a positive size, got {item!r}")
        dims[name] = int(size)
    return dims


def load_data(
    args: argparse.Namespace, info: ModelInfo, values: dict[str, int] | None = None
) -> Dataset:
    """The dataset the arguments name, its summary printed (to stderr under --json).

    ``values``: integer inputs random data must fix (silero-vad's sample rate; see
    :func:`bitlens.core.input_values.compared_constants`)."""
    data = _dataset(args, info, values)
    out = sys.stderr if getattr(args, "json", False) else sys.stdout
    for line in data.summary().lines():
        print(line, file=out)
    out.flush()
    return data


def _dataset(args: argparse.Namespace, info: ModelInfo, values: dict[str, int] | None) -> Dataset:
    fraction = args.calib_fraction
    if not 0 < fraction < 1:
        raise DataError(f"--calib-fraction must be between 0 and 1 (exclusive), got {fraction}")
    calib, evaluation = args.calib_data, args.eval_data
    if args.data and (calib or evaluation):
        raise DataError(
            "give --data (split by --calib-fraction) or --calib-data/--eval-data, not both"
        )
    if calib and evaluation:
        return Dataset.separate(read_source(calib, info, args), read_source(evaluation, info, args))
    if calib:
        return read_source(calib, info, args).reused("calibration")
    if evaluation:
        return read_source(evaluation, info, args).reused("evaluation")
    if args.data:
        return read_source(args.data, info, args, fraction)
    dims = parse_dims(args.dim)
    known = {d.key for d in needed_dims(info)} | {
        t.shape[0] for t in info.inputs if t.shape and isinstance(t.shape[0], str)
    }
    unknown = [k for k in dims if k not in known]
    if unknown:
        listed = ", ".join(sorted(k for k in known if k)) or "none"
        raise DataError(
            f"--dim {unknown[0]}: the model has no dynamic dimension of that name "
            f"(dynamic: {listed})"
        )
    try:
        return Dataset.random(
            info, n=args.samples, dims=dims, calibration_fraction=fraction, values=values
        )
    except MissingDimension as exc:
        # every size still missing at once, not one per attempt (pyfrspell's lemmatizer
        # needs both src_seq and tgt_seq)
        rest = [d.key for d in needed_dims(info) if d.key not in dims and d.key != exc.key]
        more = "".join(f" --dim {k}=SIZE" for k in rest)
        also = f"; the model also needs{more}" if rest else ""
        raise DataError(f"{exc}; give it with --dim {exc.key}=SIZE{also}") from None


def read_source(
    path: str, info: ModelInfo, args: argparse.Namespace, fraction: float = 0.5
) -> Dataset:
    dims = parse_dims(args.dim)  # a folder of images for dynamic sizes: their height, width
    return load_path(path, info, rate=args.rate, calibration_fraction=fraction, dims=dims)


def open_model(path: str, *, fold_bn: bool = True) -> LoadedModel:
    """Load a model to work on; what the loader noted (IR version, folded weights) goes to
    stderr, so that ``--json`` output on stdout stays machine-readable.

    A model with no layer to quantize is an error here (inspect shows it instead).
    """
    model = load_model(path, fold_bn=fold_bn)
    if not model.info.layers:
        why = model.info.notes[-1] if model.info.notes else (
            "no Conv, Gemm, MatMul, Gather or RNN with float weights"
        )  # fmt: skip
        raise ModelLoadError(f"{path}: nothing to quantize: {why}")
    for note in model.info.notes:
        print(f"bitlens: note: {note}", file=sys.stderr)
    return model


def dump_json(obj: Any) -> str:
    return dumps(obj)


def fmt_db(x: float | None) -> str:
    return db_text(x)  # one rule for every dB the CLI prints


def fmt_bytes(n: int) -> str:
    return format_bytes(n)  # binary units, the same as the window


def budget_of(args: argparse.Namespace) -> int | None:
    """Apply ``--memory-budget`` to the process (bitlens.core.limits) and return the
    activation bytes the engine keeps in memory; None: not given (the engine's default)."""
    raw = getattr(args, "memory_budget", None)
    if raw is None:
        return None
    text = str(raw).strip()
    try:
        nbytes = int(text) << 20 if text.isdigit() else parse_size(text, "--memory-budget")
        if nbytes <= 0:
            raise BitlensError(f"--memory-budget={text!r}: the budget must be positive")
    except BitlensError as exc:
        raise EngineError(str(exc)) from None
    set_memory_budget(nbytes)
    return nbytes // ACTIVATION_SHARE


def engine_on_data(args: argparse.Namespace, model: LoadedModel) -> Engine:
    """An engine on ``--data`` for ``model``; where the model mixes rows along axis 0,
    its joined feeds split back (core/engine/row_mixing.py) and the user told so."""
    engine = Engine(
        model,
        load_data(args, model.info, compared_constants(model.graph_proto)),
        device=args.device,
        memory_budget=budget_of(args),
    )
    engine.keep_rows_apart()
    if engine.data is not None and engine.data.rows_mix:
        out = sys.stderr if getattr(args, "json", False) else sys.stdout
        print(f"note: {ROWS_MIX_NOTE}", file=out, flush=True)
    return engine


def calibrated_engine(args: argparse.Namespace, model: LoadedModel) -> Engine:
    """An engine on ``--data`` for ``model``, calibrated with ``--calibration``."""
    engine = engine_on_data(args, model)
    follow(engine.calibrate(args.calibration))
    return engine
