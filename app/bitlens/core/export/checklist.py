"""The fidelity report as a checklist: one row per check with what was expected, what
the export got, and a verdict (pass, warning or fail), for the window's report table.

Rows are computed from the :class:`~bitlens.core.export.report.FidelityReport`
value, never from its text. A *fail* is what fails the export (the report's
``failures``); a *warning* is what a user should know although the export is
correct: a file larger than accounted by more than ``SIZE_TARGET``, an export
slower than the float model, layers planned for integer kernels that ONNX
Runtime ran in float, results changed by the integer kernels' rounding, a compute
count (BOPs) that leaves out layers whose sizes are not known.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bitlens.core.export import verdict
from bitlens.core.export.deployed import INTEGER_KERNELS
from bitlens.core.export.report import SIZE_TARGET, FidelityReport
from bitlens.core.units import format_bytes, format_count

# Latency is measured on a shared machine; a ratio this close to 1 is noise, not a slowdown.
SLOWER = 1.1


class Verdict(StrEnum):
    PASS = "pass"
    WARNING = "warning"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    group: str  # "storage", "outputs", "size", "compute", "speed" or "messages"
    check: str
    expected: str
    got: str
    verdict: Verdict
    detail: str = ""  # why, in a sentence (the row's tooltip)


def checklist(r: FidelityReport) -> tuple[Check, ...]:
    rows: list[Check] = []
    rows += _storage(r)
    rows += _outputs(r)
    rows += _sizes(r)
    rows += _compute(r)
    rows += _speed(r)
    rows += [Check("messages", "problem", "none", f, Verdict.FAIL) for f in r.failures]
    rows += [
        Check("messages", "warning", "none", n.removeprefix("warning: "), Verdict.WARNING)
        for n in r.notes
        if n.startswith("warning: ")
    ]
    return tuple(rows)


def counts(rows: tuple[Check, ...]) -> dict[Verdict, int]:
    out = dict.fromkeys(Verdict, 0)
    for row in rows:
        out[row.verdict] += 1
    return out


def summary(r: FidelityReport, rows: tuple[Check, ...]) -> str:
    """One line: passed / passed with warnings / failed, with the counts."""
    n = counts(rows)
    if not r.passed:
        return f"fidelity check FAILED: {n[Verdict.FAIL]} failed, {n[Verdict.WARNING]} warnings"
    if n[Verdict.WARNING]:
        return f"fidelity check passed with {n[Verdict.WARNING]} warning(s)"
    return f"fidelity check passed: all {n[Verdict.PASS]} checks"


def verdict_lines(r: FidelityReport) -> list[str]:
    """For the terminal, after the text report: each check that is not a pass (the
    report's own notes and failures are already printed), then the summary line."""
    rows = checklist(r)
    lines = [
        f"{c.verdict.value}: {c.check}: got {c.got}; expected {c.expected}"
        for c in rows
        if c.verdict is not Verdict.PASS and c.group != "messages"
    ]
    return [*lines, summary(r, rows)]


# -- groups -----------------------------------------------------------------------------
def _storage(r: FidelityReport) -> list[Check]:
    quantized = [la for la in r.layers if la.weights]
    bad = [la for la in quantized if not la.ok]
    rows = [
        Check(
            "storage", "weights stored as planned",
            f"{len(quantized)} layers in their formats, rebuilt bit-exact",
            f"{len(quantized) - len(bad)} of {len(quantized)}",
            Verdict.FAIL if bad else Verdict.PASS,
            "every planned weight is stored in its format and the file rebuilds the "
            "inspector's quantized weight bit for bit",
        )
    ]  # fmt: skip
    for la in bad:
        problems = [*la.problems, *(p for w in la.weights for p in w.problems)]
        rows.append(
            Check("storage", f"layer {la.name}", la.weight_format or "float",
                  "; ".join(problems), Verdict.FAIL)
        )  # fmt: skip
    fused = [la for la in r.layers if la.integer_kernel]
    if fused:
        # by name, not `la not in ran`: that compared each layer's record field by field with
        # every one that ran (n² comparisons, twice per export on the window's thread)
        ran = [la for la in fused if any(k in la.kernel for k in INTEGER_KERNELS)]
        ran_names = {la.name for la in ran}
        missed = [la.name for la in fused if la.name not in ran_names]
        rows.append(
            Check(
                "storage", "integer kernels",
                f"{len(fused)} integer-weight layers run as integer kernels",
                f"{len(ran)} of {len(fused)}" + (f" (float: {', '.join(missed[:3])}"
                                                 + ("…" if len(missed) > 3 else "") + ")"
                                                 if missed else ""),
                Verdict.WARNING if missed else Verdict.PASS,
                "layers written as fusable 8-bit QDQ groups (4-bit codes Cast to int8) and "
                "what ONNX Runtime ran",
            )
        )  # fmt: skip
    return rows


def _outputs(r: FidelityReport) -> list[Check]:
    rows = []
    for o in r.outputs:
        rows.append(
            Check(
                "outputs", f"{o.name}: as written",
                "within float16 rounding of the inspector (a float16 model)" if o.as_written_half
                else "bit-exact to the inspector",
                "bit-exact" if o.as_written_exact else f"max |Δ| {o.as_written_max_abs:.3g}",
                Verdict.PASS if o.as_written_exact or o.as_written_half else Verdict.FAIL,
                "the file run with graph optimizations off against the inspector's own graph",
            )
        )  # fmt: skip
        if o.deployed_exact:
            got, v = "bit-exact", Verdict.PASS
        else:
            got = f"{o.level or 'different'}: max |Δ| {o.deployed_max_abs:.3g}"
            v = {
                verdict.REASSOCIATION: Verdict.PASS,
                verdict.INTEGER: Verdict.WARNING if o.top1_changes else Verdict.PASS,
            }.get(o.level, Verdict.FAIL)
        rows.append(
            Check(
                "outputs", f"{o.name}: deployed",
                f"bit-exact, or within float tolerance {o.tolerance:.3g}, or 1-LSB integer "
                "rounding",
                got, v,
                "the file in a default ONNX Runtime session against the inspector's prediction",
            )
        )  # fmt: skip
        if o.top1_agreement is not None:
            changed = o.top1_changes
            v = Verdict.PASS if not changed else (
                Verdict.WARNING if o.level == verdict.INTEGER else Verdict.FAIL
            )  # fmt: skip
            rows.append(
                Check(
                    "outputs", f"{o.name}: top-1", "same result wherever the winner led clearly",
                    f"{100 * o.top1_agreement:.2f}% agree" + (
                        f", {changed} changed" if changed else ""),
                    v,
                )
            )  # fmt: skip
        if o.nonfinite:
            rows.append(
                Check("outputs", f"{o.name}: finite", "no NaN or infinity", "NaN/inf found",
                      Verdict.FAIL)
            )  # fmt: skip
    return rows


def _sizes(r: FidelityReport) -> list[Check]:
    def within(err: float) -> Verdict:
        return Verdict.PASS if abs(err) <= SIZE_TARGET else Verdict.WARNING

    return [
        Check(
            "size", "quantized weight bytes", format_bytes(r.weights_planned),
            f"{format_bytes(r.weights_stored)} ({100 * r.weights_size_error:+.1f}%)",
            within(r.weights_size_error),
            f"the plan's accounting of the quantized weights (within {100 * SIZE_TARGET:.0f}%)",
        ),
        Check(
            "size", "file size", f"{format_bytes(r.file_expected)} (predicted)",
            f"{format_bytes(r.file_bytes)} ({100 * r.file_size_error:+.1f}%)",
            within(r.file_size_error),
            f"the file against the accounting (within {100 * SIZE_TARGET:.0f}%)",
        ),
    ]  # fmt: skip


def _compute(r: FidelityReport) -> list[Check]:
    """Bit-operations under the plan against float, the figure the CLI and the text report
    print; a warning when layers are left out of it (their MACs are not known)."""
    c = r.compute
    if c is None:
        return []
    layers = c.get("layers", {})
    if not layers:
        return []
    unknown = sum(1 for v in layers.values() if v.get("bops") is None)
    q, f = int(c["total_bops"]), int(c["total_bops_float"])
    expected = "every layer counted"
    if unknown == len(layers):
        got = f"not counted: no layer's sizes known ({unknown} layers)"
    else:
        expected += f"; float {format_count(f)}"
        got = format_count(q) + (f" ({f / q:.1f}× fewer)" if q else "")
        if unknown:
            got += f"; {unknown} of {len(layers)} layers not counted"
    return [
        Check(
            "compute", "bit-operations (BOPs)", expected, got,
            Verdict.WARNING if unknown else Verdict.PASS,
            "MACs × weight bits × activation bits per sample, at the data's input sizes; a "
            "layer whose sizes shape inference cannot tell is left out of the totals",
        )
    ]  # fmt: skip


def _speed(r: FidelityReport) -> list[Check]:
    lat = r.latency
    if lat is None:
        return []
    ratio, how = lat.judged
    export_ms, float_ms = lat.judged_ms  # the times the ratio is read from
    # not measured is no pass: the user is told the speed is unknown
    slower = ratio is None or ratio > SLOWER
    return [
        Check(
            "speed", f"latency ({', '.join(p.removesuffix('ExecutionProvider') for p in lat.providers)})",
            f"no slower than float ({float_ms:.3f} ms)",
            f"{export_ms:.3f} ms" + (f" (×{ratio:.2f})" if ratio is not None else ": not measured"),
            Verdict.WARNING if slower else Verdict.PASS,
            f"{how}; formats without integer kernels run as float "
            "simulation and can be slower than the float model",
        )
    ]  # fmt: skip
