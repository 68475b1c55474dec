"""Check an exported file against the plan and the engine's prediction.

Reloads the file from disk and applies the three rules documented in
:mod:`bitlens.core.export.report` (storage, as written, deployed), then
measures size against the plan's accounting and latency against the
float model. Long-running: a generator yielding progress after each step.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort

from bitlens.core import targets
from bitlens.core.compute import compute_of
from bitlens.core.engine.session import release_arena, requested_providers
from bitlens.core.errors import BitlensError, ExportError
from bitlens.core.export import dynamic_lstm, focus, probes, spacetodepth, tensorrt, verdict
from bitlens.core.export.codestore import SampleCodes
from bitlens.core.export.deployed import (
    INTEGER_KERNELS,
    deployed_codes,
    flat_cat,
    kernels_used,
    max_abs,
    open_session,
    same,
)
from bitlens.core.export.exporter import (
    METADATA_KEY,
    ExportOptions,
    ExportResult,
    Prepared,
    check_target,
    export,
)
from bitlens.core.export.half_floor import FLOOR_FACTOR, half_floor
from bitlens.core.export.hardswish_float import as_exported_hardswish
from bitlens.core.export.latency import BUDGET_S, median_latencies
from bitlens.core.export.rebuild import rebuilt_weights
from bitlens.core.export.report import (
    SIZE_TARGET,
    FidelityReport,
    LatencyCheck,
    LayerCheck,
    OutputCheck,
    QuantizerCheck,
)
from bitlens.core.export.segments import local_checks
from bitlens.core.export.stayedfloat import Stayed, stayed_float_notes
from bitlens.core.export.storage import all_initializers, layer_storage
from bitlens.core.export.weights import WeightEncoding
from bitlens.core.fileio import atomic_write_text, check_output, replace_into, staging_path
from bitlens.core.frozen_heap import frozen_during
from bitlens.core.model.half_activations import computes_in_half, half_written_note
from bitlens.core.model.tensors import is_tensor_value
from bitlens.core.plan import Plan
from bitlens.core.quantized import quantize_model
from bitlens.core.recovery.export import planned_bias
from bitlens.core.results import Progress

if TYPE_CHECKING:
    from bitlens.core.engine import Engine


def check_fidelity(
    engine: Engine, plan: Plan, result: ExportResult, *, latency_budget_s: float = BUDGET_S
) -> Generator[Progress, None, FidelityReport]:
    """Apply the storage, as-written and deployed rules to the file ``result`` describes.

    ``latency_budget_s`` bounds the time spent timing each of the two models
    (at least MIN_RUNS runs each; 0 for a quick check).
    """
    steps = 5
    failures: list[str] = []
    notes: list[str] = list(result.notes)
    providers = requested_providers(engine.device)
    if not result.path.is_file():
        raise ExportError(f"{result.path}: the export is missing")
    exported = onnx.load(str(result.path))
    if METADATA_KEY not in {p.key for p in exported.metadata_props}:
        failures.append("the file carries no Bitlens export record")
    records = result.layers
    if result.target == targets.TENSORRT:  # the file against TensorRT's documented Q/DQ rules
        trt, advice = tensorrt.structural_problems(exported)
        failures.extend(f"TensorRT: {p}" for p in trt)
        notes.extend(f"TensorRT: {a}" for a in advice)
    # the weights the export wrote, as the engine computed them (recomputed only for a result
    # made without them)
    qm = result.quantized if result.quantized is not None else quantize_model(engine, plan)
    yield Progress(1, steps, "reloaded the export")

    # -- rule 2: the export in its simulated form, arranged as the engine runs it ----------
    biases = {
        r.bias.feeds: (r.bias.bias, planned_bias(engine, qm, r.name, r.bias.bias))
        for r in records.values()
        if r.bias is not None
    }
    nbits = {
        e.stored[0].name: e.weight
        for r in records.values()
        for e in r.weights
        if e.scheme == "matmulnbits"
    }
    # (a DynamicQuantizeLSTM stays: the engine runs that kernel too, bitlens.core.engine.lstm_nodes)
    reference, decoded = probes.reference_model(exported, biases, nbits)
    decoded.update(dynamic_lstm.decoded_weights(exported, records))
    # weights read before the stem rewrites are undone: rebuilt_weights maps their stored
    # layout back itself (bitlens.core.export.spacetodepth, focus)
    rebuilt = rebuilt_weights(reference, engine, records, providers, qm)
    spacetodepth.restore(reference, records)
    focus.restore(reference, records)
    feeds_w = {
        w.name: rebuilt.get(w.name, decoded.get(w.name))
        for layer in engine.info.layers
        if not layer.graph_path
        for w in layer.weights
    }
    feeds_w = {k: v if v is not None else engine.model.weight(k) for k, v in feeds_w.items()}
    quantizer_recs = list(
        dict.fromkeys([*(q for r in records.values() for q in r.quantizers),
                       *result.tensor_quantizers])
    )  # fmt: skip
    # a folded Div/Mul's quantizer shares its input's codes (bitlens.core.export.rescale)
    code_outputs = list(
        dict.fromkeys((probes.probe_tensor(q), probes.code_type(q)) for q in quantizer_recs)
    )
    simulated = probes.with_outputs(probes.weights_as_inputs(reference, feeds_w), code_outputs)
    sess_sim = open_session(simulated, providers, mode="written")
    out_names = [o.name for o in engine.info.outputs if is_tensor_value(o)]
    code_names = [n for n, _ in code_outputs]
    samples = list(engine.data.evaluation)
    # what the inspector shows (optimized session)
    want = _owned(engine.run_outputs(plan, samples))
    release_arena()  # that run's buffers in the engine's arena, which nothing holds now
    # the reference above has the float biases back, so the engine's graph is fed them too
    sim, sim_feeds = engine.simulation(plan, int32_bias=False)
    # with the export's one float rewrite (a float HardSwish written as the op again)
    written_sim = as_exported_hardswish(sim.model, out_names)
    want_written = _run_unoptimized(written_sim, sim_feeds, engine, samples, out_names, providers)
    del written_sim
    ref_out: dict[str, list[np.ndarray]] = {n: [] for n in out_names}
    ref_codes = SampleCodes()  # each sample's codes, within the memory budget
    for i in samples:
        values = sess_sim.run([*out_names, *code_names], {**engine.data.samples[i], **feeds_w})
        for name, v in zip(out_names, values[: len(out_names)], strict=True):
            ref_out[name].append(np.array(v))  # a copy: the run's arrays hold its arena
        ref_codes.append(dict(zip(code_names, values[len(out_names) :], strict=True)))
        del values
    # its arena (one run of the whole model with every code exposed) and the weights it read
    del sess_sim, simulated, feeds_w
    yield Progress(2, steps, "ran the export in its simulated form")

    # -- rule 1: storage --------------------------------------------------------------------
    inits = all_initializers(exported)
    layer_checks_partial = {
        name: layer_storage(engine, plan, qm, exported, rec, rebuilt, decoded, inits)
        for name, rec in records.items()
    }
    del rebuilt, decoded, inits

    # -- rule 3: deployed ------------------------------------------------------------------------
    # one default session both runs the export and saves the graph ONNX Runtime made of it
    sess_dep, optimized = _deployed_session(result.path, providers)
    dep_out: dict[str, list[np.ndarray]] = {n: [] for n in out_names}
    for i in samples:
        values = sess_dep.run(out_names, engine.data.samples[i])
        for name, v in zip(out_names, values, strict=True):
            dep_out[name].append(np.array(v))
    kernels = kernels_used(optimized, engine, records)
    outputs: list[OutputCheck] = []
    in_half = computes_in_half(plan.info)
    # a float16 model: how far its own float file is from the engine's graph (half_floor.py)
    floors = half_floor(engine, samples, out_names, providers) if in_half else {}
    for name in out_names:
        # Rule 2 compares like with like: the engine's graph and the file, both run as
        # written (no graph optimization), must agree bit for bit.
        ww, r = flat_cat(want_written[name]), flat_cat(ref_out[name])
        w, d = flat_cat(want[name]), flat_cat(dep_out[name])
        u = verdict.narrowest_roundoff(plan, w.dtype)
        floor_written, floor_deployed = floors.get(name, (0.0, 0.0))
        tol = max(verdict.reassociation_tolerance(w, u), FLOOR_FACTOR * floor_deployed)
        scale = float(np.max(np.abs(w[np.isfinite(w)]))) if np.isfinite(w).any() else 0.0
        dep_abs = max_abs(w, d)
        axis = engine.class_score_axes.get(name, -1)
        classes = verdict.looks_like_classes(want[name][0], name in engine.class_score_axes, axis)
        agreement, changes = (
            verdict.top1_changes(want[name], dep_out[name], tol, axis) if classes else (None, 0)
        )
        exact = same(w, d)
        written_exact, written_abs = same(ww, r), max_abs(ww, r)
        half = (
            not written_exact
            and in_half
            and written_abs <= max(tol, FLOOR_FACTOR * floor_written)
        )
        level = (
            verdict.BIT_EXACT if exact
            else verdict.REASSOCIATION if dep_abs <= tol and not changes
            else verdict.DIFFERENT
        )  # fmt: skip
        outputs.append(
            OutputCheck(
                name, written_exact, written_abs, exact, dep_abs,
                dep_abs / scale if scale > 0 else (0.0 if dep_abs == 0 else math.inf),
                level=level, tolerance=tol, top1_agreement=agreement, top1_changes=changes,
                nonfinite=verdict.nonfinite(want[name]) or verdict.nonfinite(dep_out[name]),
                as_written_half=half,
            )
        )  # fmt: skip
        if half:
            notes.append(half_written_note(name, written_abs))
        if in_half and max(floor_written, floor_deployed) > 0:
            notes.append(
                f"output {name!r}: this float16 model's own file differs from the engine's "
                f"graph of it by {floor_written:.3g} as written and {floor_deployed:.3g} "
                f"deployed with nothing quantized; the export is judged within "
                f"{FLOOR_FACTOR:g}x that (core/export/half_floor.py)"
            )
        elif not written_exact:
            failures.append(
                f"output {name!r} run as written differs from the engine's graph run as written "
                f"(max |Δ| {written_abs:.3g}); the file does not encode the plan exactly"
            )
    _nonfinite_failures(engine, plan, sim, sim_feeds, samples, outputs, want, providers, failures)
    # every output of every evaluation feed, four times over, and the last output's
    # concatenations: not needed by the latency and code checks, which open sessions
    del want, want_written, ref_out, sim, sim_feeds
    ww = r = w = d = None
    yield Progress(3, steps, "ran the export in a default session")

    # Timed now, while the export's session is warm from every evaluation feed (it needs no
    # warm-up), so that it and the float model's session are gone before the code checks.
    float_sess = open_session(engine.model.runnable(), providers, mode="deployed")
    t_exp, t_float = median_latencies(
        [sess_dep, float_sess], engine.data.samples[samples[0]], latency_budget_s,
        warmups=(0, 1),
    )  # fmt: skip
    latency = LatencyCheck(
        tuple(sess_dep.get_providers()), t_exp.median_ms, t_float.median_ms,
        min(t_exp.runs, t_float.runs),
        t_float.ratio_spread if math.isfinite(t_float.ratio_spread) else None,
        t_exp.min_ms, t_float.min_ms,
    )  # fmt: skip
    del sess_dep, float_sess
    yield Progress(4, steps, "measured latency")

    quantizer_checks = [
        QuantizerCheck(q.layer, q.activation, q.format, q.simulated, None, None)
        for q in quantizer_recs
    ]
    if not all(o.deployed_exact for o in outputs) and quantizer_recs:
        before = len(failures)
        quantizer_checks = deployed_codes(
            optimized, providers, engine, samples, quantizer_recs, ref_codes, dep_out,
            failures,
        )  # fmt: skip
        del dep_out  # before the segment sessions open
        acc = max((r.accumulator_lsb or 0.0 for r in records.values()), default=0.0)
        quantizer_checks, outputs = local_checks(
            exported, reference, providers, engine, samples, quantizer_recs,
            quantizer_checks, ref_codes, outputs, acc, failures, notes,
        )  # fmt: skip
        kernels_ok = len(failures) == before
        outputs = [
            dataclasses.replace(o, level=verdict.INTEGER)
            if o.level == verdict.DIFFERENT and kernels_ok
            else o
            for o in outputs
        ]
    ref_codes.close()
    for o in outputs:
        if o.top1_changes and o.level == verdict.INTEGER:
            # Every quantizer is within the integer kernels' documented 1 LSB when it runs
            # alone: the export is what the kernels do, but their rounding, accumulated
            # through depth, changes results the simulation predicted. That is flagged, not
            # failed: `bitlens eval --deployed` shows the deployed numbers.
            notes.append(
                f"warning: output {o.name!r}: the integer kernels' rounding (1 LSB per layer, "
                f"accumulated) changes the result (top-1 / value) at {o.top1_changes} "
                f"position(s) against the simulation (agreement "
                f"{100 * (o.top1_agreement or 0):.2f}%); `bitlens eval --deployed` shows the "
                "deployed numbers"
            )
        elif o.top1_changes:
            failures.append(
                f"output {o.name!r}: the deployed model changes the result (top-1 / value) at "
                f"{o.top1_changes} position(s) where the simulation's winner led by more than "
                f"float reordering explains (agreement {100 * (o.top1_agreement or 0):.2f}%)"
            )
        elif o.level == verdict.DIFFERENT:
            failures.append(
                f"output {o.name!r}: deployed run differs by {o.deployed_max_abs:.3g} "
                f"({o.deployed_max_rel:.2g} of its range), more than float reordering explains "
                f"({o.tolerance:.3g}) and not explained by 1-LSB integer kernels"
            )
    yield Progress(5, steps, "compared activation codes")

    layer_checks: list[LayerCheck] = []
    stayed: list[Stayed] = []  # planned as an integer kernel, ran float
    for name, rec in records.items():
        partial = layer_checks_partial[name]
        check = LayerCheck(**{**partial, "kernel": kernels.get(name, "?")})
        layer_checks.append(check)
        for p in (*check.problems, *(p for wc in check.weights for p in wc.problems)):
            failures.append(f"layer {name!r}: {p}")
        if "MatMulNBits" in check.kernel and any(w.scheme == "qdq" for w in rec.weights):
            notes.append(
                f"layer {name!r}: ONNX Runtime rewrote DequantizeLinear -> {rec.op_type} into "
                "MatMulNBits, which quantizes activations to int8 inside the kernel (unless the "
                "session sets session.qdq_matmulnbits_accuracy_level=0); export with folded "
                "weights or MatMulNBits for results equal to the inspector's"
            )
        layer = engine.info.layer(name)
        choice = plan[name]
        ran = kernels.get(name, "?")
        if (
            targets.kernel_format(layer, choice.weight, choice.activation, choice.dynamic)
            and not rec.integer_kernel
            and not any(k in ran for k in INTEGER_KERNELS)
        ):
            stayed.append((name, ran, choice.weight))
        if rec.integer_kernel and not any(k in kernels.get(name, "") for k in INTEGER_KERNELS):
            notes.append(
                f"layer {name!r} was written as a fusable QDQ group, but ONNX Runtime ran "
                f"{kernels.get(name, '?')} (no integer kernel for this pattern on this provider)"
            )
    notes.extend(stayed_float_notes(plan.target, stayed))
    for q in quantizer_recs:
        if q.simulated:
            notes.append(
                f"layer {q.layer!r}: {q.format} activations are simulated in float; "
                "ONNX Runtime has no integer kernel for this format"
            )

    replaced = sum(
        _float_bytes(engine, e.weight) for r in records.values() for e in _unique(r.weights)
    )
    for lc in layer_checks:
        if lc.weights and not lc.saves_bytes:
            notes.append(
                f"layer {lc.name!r}: {lc.weight_format} cannot save bytes here: the file holds "
                f"{lc.bytes_float + lc.bytes_file} B for {lc.bytes_float} B of float weights"
            )
    planned = stored = 0
    counted: set[str] = set()
    for lc, rec in zip(layer_checks, records.values(), strict=True):
        names = {e.weight for e in rec.weights}
        if names and names <= counted:  # a later reader of shared weights: stored once
            continue
        counted |= names
        planned, stored = planned + lc.bytes_planned, stored + lc.bytes_stored
    file_bytes = result.path.stat().st_size
    expected = result.accounted_bytes or (result.source_bytes - replaced + planned)
    if expected and abs(file_bytes - expected) > SIZE_TARGET * expected:
        notes.append(
            f"the file holds {file_bytes} B, {100 * (file_bytes / expected - 1):+.1f}% off the "
            f"accounting ({expected} B): something the export writes is not accounted"
        )
    return FidelityReport(
        model=str(engine.info.path or "<in memory>"),
        export=str(result.path),
        opset=result.opset,
        source_opset=result.source_opset,
        ir_version=result.ir_version,
        min_ort=result.min_ort,
        ort_version=ort.__version__,
        options={
            "weights": result.options.weights,
            "matmulnbits": result.options.matmulnbits,
            "int2_qdq": result.options.int2_qdq,
            "int32_bias": result.options.int32_bias,
            "target": result.target,
        },
        layers=tuple(layer_checks),
        outputs=tuple(outputs),
        quantizers=tuple(quantizer_checks),
        weights_planned=planned,
        weights_stored=stored,
        file_bytes=file_bytes,
        file_expected=expected,
        latency=latency,
        samples=len(samples),
        failures=tuple(failures),
        notes=tuple(dict.fromkeys(notes)),
        compute=compute_of(engine).to_dict(engine.info, plan),
    )


# -- helpers -----------------------------------------------------------------------------------
def _deployed_session(
    path: Path, providers: list[str]
) -> tuple[ort.InferenceSession, onnx.ModelProto]:
    """A default session of the export and the graph ONNX Runtime optimized for it (saved by
    that session as it loads, instead of a second session built only to save it)."""
    with tempfile.TemporaryDirectory(prefix="bitlens-opt-") as tmp:
        opt_path = str(Path(tmp) / "optimized.onnx")
        sess = open_session(str(path), providers, mode="deployed", optimized=opt_path)
        return sess, onnx.load(opt_path)


def _run_unoptimized(
    model: onnx.ModelProto,
    extra: dict[str, np.ndarray],
    engine: Engine,
    samples: Sequence[int],
    names: Sequence[str],
    providers: list[str],
) -> dict[str, list[np.ndarray]]:
    """``names`` of the engine's graph for ``samples``, every node run as stored."""
    sess = open_session(model, providers, mode="written")
    wanted = {i.name for i in sess.get_inputs()}
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in samples:
        feed = {k: v for k, v in {**engine.data.samples[i], **extra}.items() if k in wanted}
        for n, v in zip(names, sess.run(list(names), feed), strict=True):
            out[n].append(np.array(v))  # a copy: the run's arrays would keep its arena
    return out


def _owned(values: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Copies of a session's outputs: ONNX Runtime's arrays are views into its arena, and
    keeping one keeps the arena (every buffer of the largest run) after the session."""
    return {n: [np.array(v) for v in vs] for n, vs in values.items()}


def _nonfinite_failures(
    engine: Engine,
    plan: Plan,
    sim,
    sim_feeds: dict[str, np.ndarray],
    samples: Sequence[int],
    outputs: Sequence[OutputCheck],
    want: dict[str, list[np.ndarray]],
    providers: list[str],
    failures: list[str],
) -> None:
    """A NaN or infinity in any output fails the export, naming the layer that made it."""
    bad = [o.name for o in outputs if o.nonfinite]
    if not bad:
        return
    where = ""
    if any(verdict.nonfinite(want[n]) for n in bad):
        feeds = [{**engine.data.samples[i], **sim_feeds} for i in samples]
        found = verdict.first_nonfinite(sim.model, feeds, sim.layer_outputs, providers)
        if found is not None:
            layer, k = found
            choice = plan[layer]
            fmts = ", ".join(
                f"{what} {f.name}"
                for what, f in (("weights", choice.weight), ("activations", choice.activation))
                if f is not None
            )
            where = (
                f"; first produced by layer {layer!r} ({fmts or 'float'}) on evaluation "
                f"sample {k} (an fp16 activation overflows above 65504)"
                if choice.activation is not None and choice.activation.float_kind == "fp16"
                else f"; first produced by layer {layer!r} ({fmts or 'float'}) on evaluation "
                f"sample {k}"
            )
    else:
        where = "; only the deployed run produces them, the simulation is finite"
    failures.append(f"output(s) {', '.join(map(repr, bad))} hold NaN or infinite values{where}")


def _float_bytes(engine: Engine, weight: str) -> int:
    return int(engine.model.weight(weight).nbytes)


def _unique(encs: Sequence[WeightEncoding]) -> list[WeightEncoding]:
    return list({e.weight: e for e in encs}.values())


def export_and_check(
    engine: Engine,
    plan: Plan,
    path: str | Path,
    options: ExportOptions | None = None,
    report_path: str | Path | None = None,
    *,
    latency_budget_s: float = BUDGET_S,
    prepared: Prepared | None = None,
) -> Generator[Progress, None, FidelityReport]:
    """Export, check, and write the JSON report next to the export (``<name>.fidelity.json``).

    The export is written to a hidden sibling first and renamed into place only once the
    check has run, so cancelling at any point leaves ``path`` (and any file it held) as it was.
    The objects alive at its start are kept out of the garbage collector until it ends
    (core/frozen_heap.py: a full collection held the interpreter lock 35-40 ms in the
    window's export of PP-OCRv4 rec).
    """
    return (yield from frozen_during(_export_and_check(
        engine, plan, path, options, report_path, latency_budget_s, prepared
    )))  # fmt: skip


def _export_and_check(
    engine: Engine,
    plan: Plan,
    path: str | Path,
    options: ExportOptions | None,
    report_path: str | Path | None,
    latency_budget_s: float,
    prepared: Prepared | None,
) -> Generator[Progress, None, FidelityReport]:
    target = Path(path)
    check_target(engine, target)  # before staging: the staging name would pass the check
    out = Path(report_path) if report_path else default_report_path(target)
    try:
        check_output(out, "json", [engine.info.path, target], what="fidelity report")
    except BitlensError as exc:
        raise ExportError(str(exc)) from None
    staging = staging_path(target)
    try:
        result = yield from export(engine, plan, staging, options, prepared)
        report = yield from check_fidelity(engine, plan, result, latency_budget_s=latency_budget_s)
        # A last chance to cancel before the file is put in place: a Cancel pressed during
        # the check's final part would otherwise be reported while the export is written.
        yield Progress(1, 1, "writing the export")
    except BaseException:  # cancelled (GeneratorExit) or failed: leave nothing behind
        staging.unlink(missing_ok=True)
        raise
    replace_into(staging, target)
    report = dataclasses.replace(report, export=str(target))
    atomic_write_text(out, report.to_json() + "\n")
    return report


def default_report_path(export_path: str | Path) -> Path:
    p = Path(export_path)
    return p.with_name(p.stem + ".fidelity.json")
