"""The 1-LSB rule kernel by kernel, all segments in one session per side.

Differences flow downstream: a code one step off changes the sums of the
next layer, so after a few fused layers the whole-model codes may differ by
more than one step although no kernel does. Each segment (the nodes from the
codes feeding a quantizer to that quantizer, see :func:`probes.segment`) is
therefore run on the as-written codes, once in a default session of the
export and once as written from the reference, and compared.

Segments only read boundary tensors (quantizer codes, model inputs), which
are fed, so they do not interact: cutting the graph at every boundary gives
one model that computes every segment at once (:func:`cut_model`). Two
sessions then do what two sessions per segment did (87 quantizers on a 40-conv
recognizer: 174 sessions, a third of the export + check's time). The cut
keeps each segment's nodes, initializers and symbolic input types as the
one-segment model has them, so ONNX Runtime makes the same fusions inside
each; where the cut model does not load, each segment is run alone as before
(``one_by_one``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from bitlens.core.errors import ExportError
from bitlens.core.export import probes
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.export.deployed import open_session
from bitlens.core.export.reductions import LsbMax, MaxAbsDiff
from bitlens.core.export.report import OutputCheck, QuantizerCheck

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

LOCAL = "__bitlens_local"  # suffix of a cut target's own value, computed from fed codes

# one feed's values, target -> (as written, deployed)
Consumer = Callable[[Mapping[str, tuple[np.ndarray, np.ndarray]]], None]


def cut_model(
    model: onnx.ModelProto,
    targets: Sequence[str],
    boundary: set[str],
    types: Mapping[str, onnx.TypeProto],
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """One model holding every segment of ``targets`` that :func:`probes.segment` can build.

    Boundary tensors become graph inputs; a target that is itself a boundary tensor is
    written by its producer under ``<target>__bitlens_local`` (later segments read the fed
    value under its own name). Returns the model and, per target it computes, the name of
    the graph output that holds it.
    """
    g = model.graph
    producer = {o: k for k, n in enumerate(g.node) for o in n.output}
    inits = {t.name: t for t in g.initializer}
    nodes: set[int] = set()
    inputs: dict[str, None] = {}
    used: dict[str, None] = {}
    outputs: dict[str, str] = {}
    for t in dict.fromkeys(targets):
        found = probes.segment_walk(g, producer, inits, t, boundary, types)
        if found is None:
            continue
        nodes |= found[0]
        inputs.update(dict.fromkeys(found[1]))
        used.update(dict.fromkeys(found[2]))
        outputs[t] = t + LOCAL if t in boundary else t
    renamed = {t: out for t, out in outputs.items() if out != t}
    kept: list[onnx.NodeProto] = []
    for k, n in enumerate(g.node):
        if k not in nodes:
            continue
        if set(n.output) & renamed.keys():
            n = _copy(n)
            for j, o in enumerate(n.output):
                n.output[j] = renamed.get(o, o)
        kept.append(n)
    g2 = helper.make_graph(
        kept, "bitlens_segments",
        [probes.value_info(n, types[n]) for n in inputs],
        [probes.value_info(out, types[t]) for t, out in outputs.items()],
        [inits[n] for n in used],
    )  # fmt: skip
    cut = helper.make_model(
        g2, opset_imports=list(model.opset_import), functions=list(model.functions)
    )
    cut.ir_version = model.ir_version
    return cut, outputs


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    out = onnx.NodeProto()
    out.CopyFrom(node)
    return out


def run_segments(
    exported: onnx.ModelProto,
    reference: onnx.ModelProto,
    targets: Sequence[str],
    boundary: set[str],
    types: Mapping[str, onnx.TypeProto],
    providers: list[str],
    feeds: Sequence[Mapping[str, np.ndarray]],
    consume: Consumer,
    *,
    one_by_one: bool = False,
) -> list[str]:
    """Every segment of ``targets``, deployed (the export, default session) and as written
    (the reference, no optimization), on ``feeds`` (boundary values by name): all at once
    in the cut model, or ``one_by_one``, each in its own two sessions (the straightforward
    way, kept as the fallback and as the tests' reference). ``consume`` gets each feed's
    values, per target (as written, deployed), as they are computed, so that one feed's
    values are held at a time. Returns the targets computed."""
    if one_by_one:
        done: list[str] = []
        for t in dict.fromkeys(targets):
            seg_dep = probes.segment(exported, t, boundary, types)
            seg_ref = probes.segment(reference, t, boundary, types)
            if seg_dep is not None and seg_ref is not None:
                _run_both(seg_dep, seg_ref, {t: (t, t)}, providers, feeds, consume)
                done.append(t)
        return done
    cut_dep, names_dep = cut_model(exported, targets, boundary, types)
    cut_ref, names_ref = cut_model(reference, targets, boundary, types)
    common = [t for t in dict.fromkeys(targets) if t in names_dep and t in names_ref]
    if not common:
        return []
    fetch = {t: (names_dep[t], names_ref[t]) for t in common}
    _run_both(cut_dep, cut_ref, fetch, providers, feeds, consume)
    return common


def _run_both(
    dep: onnx.ModelProto,
    ref: onnx.ModelProto,
    fetch: Mapping[str, tuple[str, str]],
    providers: list[str],
    feeds: Sequence[Mapping[str, np.ndarray]],
    consume: Consumer,
) -> None:
    """``dep`` in a default session and ``ref`` as written, each fed what its inputs name;
    per feed and target, the (as written, deployed) values of the outputs ``fetch`` names
    for it, handed to ``consume``."""
    s_dep = open_session(dep, providers, mode="deployed")
    s_ref = open_session(ref, providers, mode="written")
    in_dep = [i.name for i in dep.graph.input]
    in_ref = [i.name for i in ref.graph.input]
    for feed in feeds:
        w = s_ref.run([r for _, r in fetch.values()], {n: feed[n] for n in in_ref})
        d = s_dep.run([d for d, _ in fetch.values()], {n: feed[n] for n in in_dep})
        consume({t: (a, b) for t, a, b in zip(fetch, w, d, strict=True)})
        del w, d


class _Feeds(Sequence[dict[str, np.ndarray]]):
    """The segments' feeds, each built when read: sample ``samples[k]``'s model inputs and
    the simulation's codes of it (one sample's codes in memory at a time)."""

    def __init__(
        self, engine: Engine, samples: Sequence[int], codes: Sequence[Mapping[str, np.ndarray]]
    ) -> None:
        self._engine, self._samples, self._codes = engine, samples, codes

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {**self._engine.data.samples[self._samples[k]], **self._codes[k]}


def local_checks(
    exported: onnx.ModelProto,
    reference: onnx.ModelProto,
    providers: list[str],
    engine: Engine,
    samples: list[int],
    recs: list[QuantizerRecord],
    checks: list[QuantizerCheck],
    ref_codes: Sequence[Mapping[str, np.ndarray]],
    outputs: list[OutputCheck],
    acc_lsb: float,
    failures: list[str],
    notes: list[str],
    *,
    one_by_one: bool = False,
) -> tuple[list[QuantizerCheck], list[OutputCheck]]:
    """The 1-LSB rule kernel by kernel, on the segments where it is in doubt: quantizers
    whose whole-model codes differ by more than 1 LSB or cannot be seen, and outputs that
    are not bit-exact. ``one_by_one`` runs each segment in its own sessions (the reference
    the tests compare the cut model with)."""
    types = probes.tensor_types(reference)
    boundary = {probes.probe_tensor(q) for q in recs} | {t.name for t in engine.info.inputs}
    doubt = [
        probes.probe_tensor(rec)
        for rec, qc in zip(recs, checks, strict=True)
        if qc.max_lsb is None or qc.max_lsb > 1
    ]
    targets = [*doubt, *(o.name for o in outputs if not o.deployed_exact)]
    # the figures, reduced feed by feed (bitlens.core.export.reductions): each quantizer
    # judged below on its segment's codes, each output not bit-exact on its last segment
    lsb = {
        id(rec): LsbMax(rec)
        for rec, qc in zip(recs, checks, strict=True)
        if qc.max_lsb is None or not qc.max_lsb <= 1
    }
    readers: dict[str, list[LsbMax | MaxAbsDiff]] = {}
    for rec in recs:
        if id(rec) in lsb:
            readers.setdefault(probes.probe_tensor(rec), []).append(lsb[id(rec)])
    diff = {o.name: MaxAbsDiff() for o in outputs if not o.deployed_exact}
    for name, acc in diff.items():
        readers.setdefault(name, []).append(acc)

    def consume(values: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for t, (want, got) in values.items():
            for acc in readers.get(t, ()):
                acc.add(want, got)

    args = (exported, reference, targets, boundary, types, providers,
            _Feeds(engine, samples, ref_codes), consume)  # fmt: skip
    try:
        done = set(run_segments(*args, one_by_one=one_by_one))
    except ExportError:  # raised opening the sessions, before any feed ran
        if one_by_one:
            raise
        done = set(run_segments(*args, one_by_one=True))  # ORT refused the cut model

    out_checks: list[QuantizerCheck] = []
    for rec, qc in zip(recs, checks, strict=True):
        if qc.max_lsb is not None and qc.max_lsb <= 1:
            out_checks.append(qc)
            continue
        t = probes.probe_tensor(rec)
        what = f"layer {rec.layer!r}: {rec.format} values of {rec.activation!r}"
        if t not in done:
            if qc.max_lsb is None:
                notes.append(f"{what} live only inside fused kernels and could not be compared")
            else:
                failures.append(f"{what} differ by {qc.max_lsb:.3g} LSB (allowed: 1)")
            out_checks.append(qc)
            continue
        local = lsb[id(rec)].value
        if local > 1:
            failures.append(
                f"{what} differ by {local:.3g} LSB when their own segment runs deployed vs "
                "as written (allowed: 1)"
            )
        out_checks.append(replace(qc, local_lsb=local))
    out_outputs: list[OutputCheck] = []
    for o in outputs:
        if o.deployed_exact or o.name not in done:
            out_outputs.append(o)
            continue
        tol = max(o.tolerance, acc_lsb)
        local = diff[o.name].value
        if local > tol:
            failures.append(
                f"output {o.name!r}: its last segment differs by {local:.3g} deployed vs as "
                f"written (allowed {tol:.3g}: float reordering, or one accumulator step of an "
                "integer kernel)"
            )
        out_outputs.append(replace(o, local_max_abs=local, local_tolerance=tol))
    return out_checks, out_outputs
