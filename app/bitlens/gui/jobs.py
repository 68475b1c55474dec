"""The work the window hands to worker threads, as plain functions over the core.

Nothing here touches Qt: each function (or generator, when it reports
progress) takes the engine and a request and returns records the views
draw. The runner runs them one at a time, since the engine is not
thread-safe.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

import numpy as np

# Imported with the window rather than at the first constant fold of an open: its import builds
# onnx's operator schema table in one C call (onnx.defs.get_all_schemas_with_history, 25 ms
# with the interpreter lock held), the open's longest lock hold once the rest were cut
# (docs/benchmarks.md "opengil (session 15)").
import onnx.reference  # noqa: F401

from bitlens.core.activation_table import ActivationRow, activation_rows
from bitlens.core.compute import compute_of
from bitlens.core.data import Dataset, load_path
from bitlens.core.dims import needed_dims
from bitlens.core.engine import Engine, bind
from bitlens.core.engine.weights_only import weight_evaluation
from bitlens.core.errors import DataError, EngineError
from bitlens.core.export.exporter import ExportOptions
from bitlens.core.export.fidelity import export_and_check
from bitlens.core.export.report import FidelityReport
from bitlens.core.formats import parse_format
from bitlens.core.formats.registry import family_of
from bitlens.core.graph_layout import GraphLayout
from bitlens.core.input_values import compared_constants
from bitlens.core.model.stored_grid import layer_grid, layer_note
from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import LayerChoice, Plan, activation_choices, weight_choices
from bitlens.core.recovery.compare import RECOVERY_DEFAULT_FORMAT, MethodRow, iter_method_rows
from bitlens.core.recovery.support import OPS as RECOVERY_OPS
from bitlens.core.results import Evaluation, Progress, SweepEntry, TensorError
from bitlens.core.search import Measuring, Point, SearchOptions, SearchResult, Sensitivity, search
from bitlens.core.search import sensitivities as measure_sensitivities
from bitlens.core.usermetric import Metric, default_metric, evaluate_with, reference_outputs
from bitlens.core.viewdata import Distribution, distribution, scatter_pairs
from bitlens.gui.graph_geometry import view_layout

if TYPE_CHECKING:
    from bitlens.core.model.loader import LoadedModel

DATA_KINDS = ("random", "npz", "images", "wav")


@dataclass(frozen=True)
class DataRequest:
    """Where calibration/evaluation data come from, as the data dialog fills it in."""

    kind: str = "random"  # one of DATA_KINDS
    path: Path | None = None
    samples: int = 8  # random only
    seed: int = 0
    dims: Mapping[str, int] = field(default_factory=dict)  # sizes of symbolic dims (random)
    size: tuple[int, int] | None = None  # images: (height, width); None = the input's
    layout: str = "NCHW"
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    rate: int = 16000  # wav
    frame: int | None = None
    eval_path: Path | None = None  # data that only evaluate; None: split these by fraction
    calib_fraction: float = 0.5

    def describe(self) -> str:
        if self.kind == "random":
            what = f"random inputs ({self.samples} samples, seed {self.seed})"
        else:
            what = f"{self.kind}: {self.path}"
        return what if self.eval_path is None else f"{what}, evaluating on {self.eval_path}"


@dataclass
class Session:
    """A loaded model with its data and engine, ready to evaluate plans."""

    model: LoadedModel
    data: Dataset | None  # None: opened without inputs (weights only) until sizes are given
    engine: Engine
    path: Path | None
    title: str  # the window title's model name
    request: DataRequest | None  # None: the data came with a sample
    providers: tuple[str, ...]
    data_note: str = ""  # why there are no data, when random inputs could not be made
    # The model's size, measured here in the worker: ``ByteSize`` of a 54 MB proto takes
    # a quarter second that the window's thread must not spend.
    model_bytes: int = field(init=False)
    # Where the graph view draws each node, laid out here for the same reason.
    layout: GraphLayout = field(init=False)

    def __post_init__(self) -> None:
        self.model_bytes = self.model.nbytes
        self.layout = view_layout(self.model.info)

    @property
    def info(self) -> ModelInfo:
        return self.model.info


def build_dataset(
    request: DataRequest, info: ModelInfo, values: Mapping[str, int] | None = None
) -> Dataset:
    """The request's data; with ``eval_path`` those calibrate and ``eval_path`` evaluates.
    ``values``: integer inputs random data must fix (see ``compared_constants``)."""
    fraction = request.calib_fraction if request.eval_path is None else 0.5
    data = _source(request, info, fraction, values)
    if request.eval_path is None:
        return data
    evaluation = load_path(request.eval_path, info, rate=request.rate)
    return Dataset.separate(data, evaluation)


def _source(
    request: DataRequest, info: ModelInfo, fraction: float, values: Mapping[str, int] | None
) -> Dataset:
    kind = request.kind
    if kind == "random":
        return Dataset.random(
            info, n=request.samples, dims=dict(request.dims), seed=request.seed,
            calibration_fraction=fraction, values=values,
        )  # fmt: skip
    if request.path is None:
        raise DataError(f"{kind} data needs a file or folder")
    if kind == "npz":
        if request.path.is_dir():
            return Dataset.from_folder(request.path, info, calibration_fraction=fraction)
        return Dataset.from_npz(request.path, info, calibration_fraction=fraction)
    if kind == "images":
        mean = request.mean[0] if len(request.mean) == 1 else request.mean
        std = request.std[0] if len(request.std) == 1 else request.std
        return Dataset.from_images(
            request.path, info, size=request.size, layout=request.layout,
            scale=request.scale, mean=mean, std=std, calibration_fraction=fraction,
        )  # fmt: skip
    if kind == "wav":
        return Dataset.from_wav(
            request.path, info, rate=request.rate, frame=request.frame,
            calibration_fraction=fraction,
        )  # fmt: skip
    raise DataError(f"unknown data source {kind!r} (known: {', '.join(DATA_KINDS)})")


def missing_dims(info: ModelInfo, dims: Mapping[str, int]) -> list[str]:
    """Dynamic input dimensions random inputs would need a size for."""
    return [d.key for d in needed_dims(info) if d.key not in dims]


def open_model(
    path: Path,
    request: DataRequest | None,
    device: str = "auto",
    dims: Mapping[str, int] | None = None,
) -> Generator[Progress, None, Session]:
    """Load a model file, build its data and engine, and calibrate.

    Without a request the model gets random inputs sized by ``dims`` (remembered
    for this model); if some dynamic dimension has no size, it opens without data:
    weights only, until the sizes are given (never a failure to open).
    """
    from bitlens.core.model.loader import iter_load_model

    yield Progress(0, 1, f"loading {path.name}")
    model = yield from iter_load_model(path)  # cancellable between chunks
    if request is None:
        request = DataRequest(dims=dict(dims or {}))
        if missing_dims(model.info, request.dims):
            return (yield from _start(model, None, path, path.name, None, device))
        try:
            data = build_dataset(request, model.info, compared_constants(model.graph_proto))
        except DataError as exc:  # e.g. an input of unknown rank: open anyway, say why
            session = yield from _start(model, None, path, path.name, None, device)
            return replace(session, data_note=str(exc))
    else:
        data = build_dataset(request, model.info, compared_constants(model.graph_proto))
    return (yield from _start(model, data, path, path.name, request, device))


def open_sample(name: str, device: str = "auto") -> Generator[Progress, None, Session]:
    """Open a bundled sample model with the labelled data that comes with it."""
    from bitlens.core import samples
    from bitlens.core.model.loader import load_model

    sample = samples.get_sample(name)
    yield Progress(0, 1, f"loading sample {sample.title}")
    model = load_model(sample.model_path)
    arrays, labels = samples.load_sample_data(sample)
    data = Dataset.from_arrays(model.info, arrays, labels, source=f"sample data of {name}")
    return (
        yield from _start(model, data, sample.model_path, f"{sample.title} (sample)", None, device)
    )


def change_data(session: Session, request: DataRequest) -> Generator[Progress, None, Session]:
    """The same model with other data: a new engine, calibrated on the new data."""
    yield Progress(0, 1, "reading data")
    data = build_dataset(request, session.info, compared_constants(session.model.graph_proto))
    return (
        yield from _start(session.model, data, session.path, session.title, request,
                          session.engine.device, previous=session.engine)
    )  # fmt: skip


def _start(
    model: LoadedModel,
    data: Dataset | None,
    path: Path | None,
    title: str,
    request: DataRequest | None,
    device: str,
    previous: Engine | None = None,
) -> Generator[Progress, None, Session]:
    """A session of ``model`` on ``data``; ``previous``: the engine of the same model it
    replaces, whose weight errors still hold (they do not depend on the data)."""
    engine = Engine(model, data, device=device)
    if previous is not None:
        engine.keep_weight_errors(previous)
    if data is not None:
        try:
            yield from engine.calibrate("minmax")
        except EngineError as exc:
            if not data.generated:
                raise
            # ORT's message names a node deep inside; the user can act on the sizes
            first = data.samples[0]
            shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in first.items())
            raise EngineError(
                f"{exc} (on random inputs {shapes}: other input sizes, File ▸ Input Sizes…, "
                "or real data, File ▸ Open Data…, may run)"
            ) from exc
    compute_of(engine)  # counted here rather than on the UI thread (see evaluate)
    # engine.data: the feeds as run (split back where the model mixes rows along axis 0,
    # core/engine/row_mixing.py), so the status bar says what calibrated and evaluated
    return Session(model, engine.data, engine, path, title, request, engine.providers)


def recalibrate(engine: Engine, method: str) -> Generator[Progress, None, str]:
    yield from engine.calibrate(method)
    return method


def evaluate(engine: Engine, plan: Plan, metric: Metric | None = None) -> tuple[Plan, Evaluation]:
    """The plan's errors (and the user's metric); weight errors only while the model has no
    input data."""
    if engine.data is None:
        return plan, weight_evaluation(engine, plan)
    result = evaluate_with(engine, plan, metric)
    # The float pass has now run: count MACs at the shapes it saw here, on the worker, so the
    # table's BOPs column finds them counted (shape inference on the UI thread took 100 ms
    # of one event-loop turn on a ResNet-50 as the window first showed the model).
    compute_of(engine)
    return plan, result


def find_plan(
    engine: Engine, options: SearchOptions
) -> Generator[Progress | Point | Measuring, None, SearchResult]:
    """The plan search; yields Progress, every whole plan it evaluates and where it
    measures their errors (Measuring)."""
    return (yield from search(engine, options))


def sweep(
    engine: Engine, formats: Sequence[str], layers: Sequence[str] | None
) -> Generator[Progress, None, list[SweepEntry]]:
    return (yield from engine.sweep(formats, layers))


def sensitivities(
    engine: Engine,
    formats: Sequence[str],
    activation_formats: Sequence[str],
    layers: Sequence[str] | None,
    metric: Metric | None,
) -> Generator[Progress, None, tuple[list[Sensitivity], str | None]]:
    """The sweep with input activations or a task metric, as ``bitlens sweep
    --activation-formats/--metric`` runs it; with the name of the metric it measured (the
    user's, else accuracy when the data have labels, else None)."""
    entries = yield from measure_sensitivities(
        engine, formats, activation_formats, layers, metric=metric
    )
    used = metric or default_metric(reference_outputs(engine), engine.data.eval_labels)
    return entries, None if used is None else used.name


def export_model(
    engine: Engine,
    plan: Plan,
    path: Path,
    options: ExportOptions | None = None,
    report_path: Path | None = None,
) -> Generator[Progress, None, FidelityReport]:
    """Write the quantized model and its fidelity report (cancelling writes nothing)."""
    return (yield from export_and_check(engine, plan, path, options, report_path))


# -- layer detail --------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemeRow:
    format: str
    error: TensorError
    bytes_after: int
    ratio: float | None  # float bytes / bytes in this format


@dataclass(frozen=True)
class LayerDetail:
    """What the detail view shows for one layer under one choice.

    Computed in stages; each stage is a new object (the worker never changes one
    it has already handed to the window).
    """

    layer: str
    choice: LayerChoice
    bytes_before: int
    weights: Distribution | None = None
    weight_name: str = ""
    activation: Distribution | None = None
    activation_name: str = ""
    activation_note: str = ""  # why there is no activation histogram
    schemes: tuple[SchemeRow, ...] = ()  # the rows computed so far, in the order of `formats`
    formats: tuple[str, ...] = ()  # every weight format of the sandbox, in display order
    activations: tuple[ActivationRow, ...] = ()  # static and dynamic, per activation format
    complete: bool = False
    recovery: tuple[MethodRow, ...] = ()  # each method's layer output error vs rounding
    recovery_format: str = ""
    # weights the file stores as integer codes: the grid the 8-bit presets keep (stored_grid)
    grid_note: str = ""


def layer_detail(
    engine: Engine, layer_name: str, choice: LayerChoice, done: dict[str, SchemeRow] | None = None
) -> Generator[Progress | LayerDetail, None, LayerDetail]:
    """Histograms first (yielded as soon as known), then the sandbox one format at a time.

    ``done`` keeps the sandbox rows computed so far across runs of one request: a job that
    stepped aside for an evaluation starts again without redoing them.
    """
    layer = engine.info.layer(layer_name)
    weights, weight_name = None, ""
    if layer.weights:
        w = layer.weights[0]
        fmt = None if choice.weight is None else bind(choice.weight, w)
        weights = distribution(engine.weight_values(layer_name), fmt)
        weight_name = w.name
    activation, act_name, note = None, "", ""
    acts = layer.activations
    if acts and engine.data is None:
        note = "no input data yet: give the input sizes (File ▸ Input Sizes…) or open data"
    elif acts and not layer.graph_path:
        values = engine.activation_values(layer_name)
        if values is None or np.asarray(values).dtype.kind != "f":
            note = f"activation {acts[0]!r} was not captured as a float tensor"
        else:
            afmt = choice.activation
            rng = None
            if afmt is not None:
                afmt = engine.bind_activation(layer, acts[0], afmt)
            if afmt is not None and afmt.has_scale and not choice.dynamic:
                rng = engine.activation_range(acts[0], afmt)
            activation = distribution(values, afmt, value_range=rng)
            act_name = acts[0]
    else:
        note = "this layer has no quantizable activation input"
    formats = tuple(weight_choices(layer))  # listed at once, each "…" until computed
    grid = layer_grid(engine.info.stored_grids, layer.weights)  # the file's own, if not listed
    formats += (grid,) if grid is not None and grid not in formats else ()
    detail = LayerDetail(
        layer_name, choice, layer.nbytes, weights, weight_name, activation, act_name, note,
        formats=formats, grid_note=layer_note(engine.info.stored_grids, layer.weights),
    )  # fmt: skip
    done = {} if done is None else done
    if done:
        detail = replace(detail, schemes=tuple(done[f] for f in formats if f in done))
    yield detail
    # Each row is shown as it is computed (a k-means fit on a 30522-row embedding takes
    # seconds, a cast milliseconds), cheap formats first; a newer request stops the job
    # between two rows.
    todo = [f for f in cheap_first(formats) if f not in done]
    for name, err, nbytes in _schemes(engine, layer_name, todo):
        ratio = layer.nbytes / nbytes if nbytes else None
        done[name] = SchemeRow(name, err, nbytes, ratio)
        detail = replace(detail, schemes=tuple(done[f] for f in formats if f in done))
        yield Progress(len(done), len(formats), f"sandbox: {name}")
        if len(done) < len(formats):
            yield detail
    if activation is not None and engine.data is not None:
        yield detail
        act_rows = []
        feeds = engine.activation_feeds(layer_name, engine.data.evaluation) or []
        for row in activation_rows(
            feeds, activation_choices(layer),
            lambda f: engine.bind_activation(layer, acts[0], f),
            lambda f: engine.activation_range(acts[0], f),
        ):  # fmt: skip
            act_rows.append(row)
            yield Progress(len(act_rows), len(activation_choices(layer)), f"sandbox: {row.format}")
        detail = replace(detail, activations=tuple(act_rows))
    if engine.data is not None and layer.op_type in RECOVERY_OPS and not layer.graph_path:
        yield detail
        rfmt = choice.weight or parse_format(RECOVERY_DEFAULT_FORMAT)
        methods: list[MethodRow] = []
        afmt = None if choice.dynamic else choice.activation  # SmoothQuant acts through it
        for mrow in iter_method_rows(engine, layer, rfmt, afmt):
            methods.append(mrow)
            yield Progress(len(methods), 6, f"recovery: {mrow.method}")
        label = rfmt.name if afmt is None else f"{rfmt.name}, {afmt.name} activations"
        detail = replace(detail, recovery=tuple(methods), recovery_format=label)
    return replace(detail, complete=True)


def cheap_first(formats: Sequence[str]) -> list[str]:
    """``formats`` with those whose fit iterates over the values (k-means) last."""
    return sorted(formats, key=lambda f: family_of(parse_format(f)).iterative_fit)


def _schemes(engine: Engine, layer: str, formats: Sequence[str]):
    for f in formats:  # one format at a time, so a newer request can stop it between formats
        yield from engine.scheme_table(layer, [f])


# -- outputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputPairs:
    name: str
    reference: np.ndarray  # float model values (thinned)
    quantized: np.ndarray


# engine -> float outputs on its evaluation samples: computed once per engine (and data).
_FLOAT_OUTPUTS: WeakKeyDictionary[Engine, dict[str, list[np.ndarray]]] = WeakKeyDictionary()


def output_pairs(engine: Engine, plan: Plan) -> tuple[Plan, list[OutputPairs]]:
    """Float and quantized values of every model output, thinned for a scatter plot."""
    ref = _FLOAT_OUTPUTS.get(engine)
    if ref is None:
        ref = _FLOAT_OUTPUTS[engine] = engine.run_outputs(Plan(plan.info))
    got = engine.run_outputs(plan)
    out = []
    for name, values in got.items():
        r, q = scatter_pairs(ref[name], values)
        out.append(OutputPairs(name, r, q))
    return plan, out
