"""The plan's report as one self-contained HTML file (File ▸ Save Report, ``eval --report``).

Everything is inline: the CSS, and the two charts as SVG drawn by
:mod:`bitlens.core.svgchart` (the window and the CLI write the same file
from the same values: no screenshot of a widget, no image files next to
it, no script, nothing fetched). It holds the model and the plan, the
output metrics, where the data came from (source, calibration/evaluation
feeds and shapes, a warning on random inputs), the per-layer table with
every error kind and the bytes, the fidelity verdict of an export of this
plan when one was done, and, with a pinned plan A, B's deltas against A.
The plan itself is embedded as JSON, so the report reproduces the plan.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from html import escape
from pathlib import Path

from bitlens import __version__
from bitlens.core.compare import ModelComparison, PlanComparison, db_text, verdict
from bitlens.core.compute import describe_totals
from bitlens.core.data_summary import DataSummary
from bitlens.core.export.report import FidelityReport
from bitlens.core.fileio import atomic_write_text, check_output
from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import Plan
from bitlens.core.results import Evaluation, LayerResult, TensorError
from bitlens.core.svgchart import BLUE, GREY, PURPLE, Series, bar_chart
from bitlens.core.units import byte_scale, format_bytes

SQNR_CAP_DB = 80.0  # an exact layer's bar is drawn at this height (as in the window)
KINDS = {"weight": "Weight SQNR", "local": "Local SQNR", "accumulated": "Accum. SQNR"}

CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px auto;max-width:1200px;
     color:#1d1d1f;background:#fff;line-height:1.4;padding:0 16px}
h1{font-size:22px;margin-bottom:2px} h2{font-size:17px;margin-top:28px;
   border-bottom:1px solid #ddd;padding-bottom:3px}
.sub{color:#555;font-size:13px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d6d6d6;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f2f2f4;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.changed td:first-child{font-weight:bold}
.better{color:#0060a0;font-weight:bold} .worse{color:#b34700;font-weight:bold}
.same{color:#666}
.pass{color:#0b6e2f;font-weight:bold} .fail{color:#b00020;font-weight:bold}
.warn{background:#fff4e0;border-left:4px solid #e69f00;padding:6px 10px}
.kv td:first-child{color:#555;white-space:nowrap}
.chart{overflow-x:auto;margin:8px 0} .chart svg{max-width:none}
details pre{background:#f7f7f9;padding:8px;overflow:auto;font-size:12px}
"""


@dataclass(frozen=True)
class ReportContent:
    """What the report shows: values already computed by the evaluation and the export."""

    info: ModelInfo
    model: str  # the model's file name or sample title
    plan: Plan
    evaluation: Evaluation | None
    data: DataSummary | None  # None: no input data (weight errors only)
    calibration: str = "minmax"
    fidelity: FidelityReport | None = None  # an export of this very plan
    comparison: PlanComparison | None = None  # this plan (B) against a pinned plan A
    error_kind: str = "accumulated"  # which error the charts and the Δ column use
    created: str = ""  # a timestamp; empty: now
    models: ModelComparison | None = None  # this model's weights against another model's
    compute: dict | None = None  # MACs and BOPs of this plan (bitlens.core.compute.Compute.to_dict)


def write_report(path: str | Path, html: str, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Write the report atomically; never over one of ``inputs`` or a file that is not HTML."""
    target = check_output(path, "html", inputs, what="report")
    atomic_write_text(target, html)
    return target


def render_html(c: ReportContent) -> str:
    ev = c.evaluation
    kind = c.error_kind if ev is not None and _has_kind(ev, c.error_kind) else "weight"
    created = c.created or _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = f"Bitlens report: {c.model}"
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<p class='sub'>Written {escape(created)} by Bitlens {escape(__version__)} · "
        f"deployment target {escape(c.plan.target)} · calibration {escape(c.calibration)}"
        + (f" · ONNX Runtime ran on {escape(', '.join(ev.providers))}" if ev else "") + "</p>",
    ]
    parts += _summary(c, ev)
    parts += _provenance(c.data)
    if c.fidelity is not None:
        parts += _fidelity(c.fidelity)
    if c.comparison is not None:
        parts += _comparison(c.comparison)
    parts += _charts(c, ev, kind)
    parts += _layer_table(c, ev, kind)
    if c.models is not None:
        parts += _models(c.models)
    parts.append("<h2>The plan</h2><details><summary>Plan JSON (load it with File ▸ Open Plan "
                 "or <code>bitlens eval --plan</code>)</summary><pre>"
                 f"{escape(c.plan.to_json())}</pre></details>")  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- sections -----------------------------------------------------------------------------------
def _summary(c: ReportContent, ev: Evaluation | None) -> list[str]:
    rows = [("Model", escape(c.model)),
            ("Layers", f"{len(c.info.layers)} quantizable, opset {c.info.opset}")]  # fmt: skip
    if ev is None:
        rows.append(("Evaluation", "not evaluated"))
    else:
        rows.append(("Weights", f"{format_bytes(ev.bytes_before)} → {format_bytes(ev.bytes_after)}"
                     f" ({ev.compression:.2f}×, {ev.avg_bits:.2f} bits/weight)"))  # fmt: skip
        for o in ev.outputs.values():
            e = o.error
            text = (f"SQNR {_db(e.sqnr_db)} dB, cosine {e.cosine:.5f}, max |Δ| {e.max_abs:.4g}, "
                    f"relative L2 {e.rel_l2:.4g}")  # fmt: skip
            if o.top1_agreement is not None:
                text += f", top-1 agreement {100 * o.top1_agreement:.1f}%"
                text += f", KL {o.kl:.4g}" if o.kl is not None else ""  # none for class indices
            rows.append((f"Output {escape(o.name)}", text))
        for k, v in sorted(ev.task_metric.items(), key=lambda kv: kv[0] == "accuracy_float"):
            builtin = k in ("accuracy", "accuracy_float")
            label = "accuracy of the float model" if k == "accuracy_float" else k
            rows.append((escape(label), f"{100 * v:.2f}%" if builtin else f"{v:.6g}"))
        diverged = [d for d in ev.first_divergence if d]
        if diverged:
            rows.append(("Divergence", f"{len(diverged)} of {len(ev.first_divergence)} samples; "
                         "first at " + escape(", ".join(sorted(set(diverged))))))  # fmt: skip
    compute = c.compute or (c.fidelity.compute if c.fidelity is not None else None)
    if compute is not None:
        rows.append(("Compute", escape(describe_totals(compute))))
    return ["<h2>Summary</h2>", _kv(rows)]


def _provenance(data: DataSummary | None) -> list[str]:
    out = ["<h2>Data</h2>"]
    if data is None:
        out.append("<p class='warn'>No input data: only the weight errors were measured "
                   "(activation and output errors need inputs).</p>")  # fmt: skip
        return out
    if data.generated:
        out.append(f"<p class='warn'>⚠ {escape(data.warning)}.</p>")
    rows = [("Source", escape(data.source))]
    if data.split:
        rows.append(("Split", escape(data.split)))
    rows.append(("Calibration", escape(data.calibration.describe())))
    rows.append(("Evaluation", escape(data.evaluation.describe())))
    out.append(_kv(rows))
    return out


def _fidelity(r: FidelityReport) -> list[str]:
    verdict_html = ("<span class='pass'>passed</span>" if r.passed
                    else "<span class='fail'>FAILED</span>")  # fmt: skip
    rows = [
        ("Verdict", verdict_html),
        ("Export", f"{escape(r.export)} (opset {r.opset}, IR {r.ir_version}, ONNX Runtime "
                   f"{escape(r.ort_version)}, needs {escape(r.min_ort)} or later)"),
        ("File size", f"{format_bytes(r.file_bytes)} ({r.file_bytes} B) against "
                      f"{r.file_expected} B predicted ({100 * r.file_size_error:+.1f}%)"),
    ]  # fmt: skip
    if r.latency is not None:
        lat = r.latency
        ratio, how = lat.judged
        export_ms, float_ms = lat.judged_ms
        rows.append(("Latency", f"{export_ms:.3g} ms against {float_ms:.3g} ms in float "
                     + (f"({ratio:.2f}×, " if ratio is not None else "(")
                     + f"{escape(how)}, on {escape(', '.join(lat.providers))})"))
    out = ["<h2>Export fidelity</h2>", _kv(rows)]
    if r.outputs:
        out.append("<table><tr><th>Output</th><th>Level</th><th>max |Δ| deployed</th>"
                   "<th>as written bit-exact</th></tr>")  # fmt: skip
        for o in r.outputs:
            out.append(f"<tr><td>{escape(o.name)}</td><td>{escape(o.level or '-')}</td>"
                       f"<td class='num'>{o.deployed_max_abs:.3g}</td>"
                       f"<td>{'yes' if o.as_written_exact else 'no'}</td></tr>")  # fmt: skip
        out.append("</table>")
    if r.failures:
        out.append("<ul>" + "".join(f"<li class='fail'>{escape(f)}</li>" for f in r.failures)
                   + "</ul>")  # fmt: skip
    return out


def _comparison(c: PlanComparison) -> list[str]:
    rows = [("Layers changed", f"{len(c.changed)} of {len(c.layers)}"
             + (": " + escape(", ".join(c.changed[:12])) if c.changed else "")
             + (" …" if len(c.changed) > 12 else "")),
            ("Weights", f"A {format_bytes(c.bytes_a)}, B {format_bytes(c.bytes_b)} "
             f"({_delta_bytes_html(c.delta_bytes)})")]  # fmt: skip
    for o in c.outputs:
        rows.append((f"Output {escape(o.name)}", f"SQNR A {_db(o.sqnr_a)} dB, B {_db(o.sqnr_b)} dB "
                     f"({_delta_db_html(o.delta_db)})"))  # fmt: skip
    for k, (a, b) in c.metrics.items():
        rows.append((escape(k), f"A {_pct(a)}, B {_pct(b)}"))
    return ["<h2>This plan (B) against the pinned plan A</h2>",
            "<p class='sub'>Δ = B − A. ▲ blue: B is better (a higher SQNR, fewer bytes); "
            "▼ orange: B is worse.</p>", _kv(rows)]  # fmt: skip


def _charts(c: ReportContent, ev: Evaluation | None, kind: str) -> list[str]:
    names = c.info.layer_names
    cmp = c.comparison
    label = KINDS[kind]
    err_b, cap_b = _sqnr_values(ev, names, kind)
    series = [Series("plan", err_b, BLUE, cap_b)]
    if cmp is not None:
        a_vals = [d.sqnr(kind)[0] for d in cmp.layers]
        err_a = [_capped(v) for v in a_vals]
        series = [Series("A (pinned)", err_a, PURPLE, [v == math.inf for v in a_vals]),
                  Series("B (this plan)", err_b, BLUE, cap_b)]  # fmt: skip
    before = [float(layer.nbytes) for layer in c.info.layers]
    after = [math.nan if ev is None or n not in ev.layers else float(ev.layers[n].bytes_after)
             for n in names]  # fmt: skip
    div, unit = byte_scale(max(before, default=0.0))
    sizes = [Series("float", [b / div for b in before], GREY),
             Series("plan", [a / div for a in after], BLUE)]  # fmt: skip
    if cmp is not None:
        sizes = [Series("float", [b / div for b in before], GREY),
                 Series("A (pinned)", [_nan(d.bytes_a) / div for d in cmp.layers], PURPLE),
                 Series("B (this plan)", [a / div for a in after], BLUE)]  # fmt: skip
    return [
        "<h2>Error and size per layer</h2>",
        f"<p class='sub'>{escape(label)} in dB per layer (exact layers drawn faded at "
        f"{SQNR_CAP_DB:.0f} dB; hover a bar for its layer); weight bytes per layer.</p>",
        "<div class='chart'>" + bar_chart(names, series, title=f"{label} per layer",
                                          y_label="dB", tooltip_unit=" dB") + "</div>",
        "<div class='chart'>" + bar_chart(names, sizes, title="Weight size per layer",
                                          y_label=unit,
                                          tooltip_value=lambda v: format_bytes(v * div))
        + "</div>",
    ]  # fmt: skip


def _layer_table(c: ReportContent, ev: Evaluation | None, kind: str) -> list[str]:
    cmp = c.comparison
    head = ["#", "Layer", "Op", "Weight shape", "Params", "Weights", "Activations", "Size",
            "BOPs", *KINDS.values()]  # fmt: skip
    bops = (c.compute or {}).get("layers", {})
    if cmp is not None:
        head += ["A (weights / activations)", f"Δ {KINDS[kind]}", "Δ bytes"]
    out = ["<h2>Layers</h2>", "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head)
           + "</tr>"]  # fmt: skip
    for i, layer in enumerate(c.info.layers):
        ch = c.plan[layer.name]
        r: LayerResult | None = None if ev is None else ev.layers.get(layer.name)
        shape = "×".join(map(str, layer.weights[0].shape)) if layer.weights else "—"
        act = "float" if ch.activation is None else ch.activation.name + (" dyn" if ch.dynamic else "")
        size = format_bytes(layer.nbytes) + (" → " + format_bytes(r.bytes_after) if r else "")
        cells = [
            f"<td class='num'>{i}</td>", f"<td>{escape(layer.name)}</td>",
            f"<td>{escape(layer.op_type)}</td>", f"<td>{shape}</td>",
            f"<td class='num'>{layer.params}</td>",
            f"<td>{escape('float' if ch.weight is None else ch.weight.name)}</td>",
            f"<td>{escape(act)}</td>", f"<td class='num'>{size}</td>",
            f"<td class='num'>{_bops(bops.get(layer.name), c.compute is not None)}</td>",
        ]  # fmt: skip
        for k in KINDS:
            e = _err(r, k)
            cells.append(f"<td class='num'>{'—' if e is None else _db(e.sqnr_db)}</td>")
        changed = False
        if cmp is not None:
            d = cmp.layer(layer.name)
            changed = d is not None and d.changed
            cells.append(f"<td>{escape(d.choice_a) if d else '—'}</td>")
            cells.append(f"<td class='num'>{_delta_db_html(d.delta_db(kind) if d else None)}</td>")
            cells.append(f"<td class='num'>{_delta_bytes_html(d.delta_bytes if d else None)}</td>")
        cls = " class='changed'" if changed else ""
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return out


def _models(m: ModelComparison) -> list[str]:
    out = [
        "<h2>Weights against another model</h2>",
        f"<p class='sub'>This model: {escape(m.path_a)}<br>The other: {escape(m.path_b)}<br>"
        f"{len(m.layers)} layers matched by name. Diff SQNR: 10·log10(‖W‖² / ‖W_other − W‖²); "
        "W SQNR: each model's weights in this plan's format.</p>",
    ]
    for label, names in (("Only in this model", m.only_a), ("Only in the other", m.only_b)):
        if names:
            out.append(f"<p><b>{label}</b> ({len(names)}): {escape(', '.join(names))}</p>")
    out += [f"<p class='warn'>The other model: {escape(n)}</p>" for n in m.notes_b]
    head = ["Layer", "Op", "Shape", "Rel. L2 diff", "Diff SQNR", "Max |diff|", "Plan format",
            "W SQNR (this)", "W SQNR (other)"]  # fmt: skip
    out.append("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>")
    for d in m.layers:
        e = d.diff
        shape = " ".join("×".join(map(str, s)) for s in d.shapes_a) or "—"
        if not d.same_shape:
            shape += " vs " + (" ".join("×".join(map(str, s)) for s in d.shapes_b) or "—")
        cells = [escape(d.name), escape(d.op_a if d.op_a == d.op_b else f"{d.op_a} / {d.op_b}"),
                 shape]  # fmt: skip
        nums = ["—" if e is None else f"{e.rel_l2:.3g}", "—" if e is None else _db(e.sqnr_db),
                "—" if e is None else f"{e.max_abs:.3g}"]  # fmt: skip
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells)
                   + "".join(f"<td class='num'>{n}</td>" for n in nums)
                   + f"<td>{escape(d.format or 'float')}</td>"
                   + f"<td class='num'>{_db(d.sqnr_a)}</td><td class='num'>{_db(d.sqnr_b)}</td>"
                   + "</tr>")  # fmt: skip
    out.append("</table>")
    return out


# -- helpers ---------------------------------------------------------------------------------
def _bops(layer: dict | None, counted: bool) -> str:
    """A layer's BOPs under the plan; "unknown" where its sizes cannot be told, never 0."""
    if not counted:
        return "—"
    b = None if layer is None else layer.get("bops")
    return "unknown" if b is None else f"{b:.3g}"


def _kv(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{body}</table>"


def _err(r: LayerResult | None, kind: str) -> TensorError | None:
    if r is None:
        return None
    return {"weight": r.weight, "local": r.local, "accumulated": r.accumulated}[kind]


def _has_kind(ev: Evaluation, kind: str) -> bool:
    return any(_err(r, kind) is not None for r in ev.layers.values())


def _sqnr_values(ev: Evaluation | None, names, kind: str) -> tuple[list[float], list[bool]]:
    vals, capped = [], []
    for n in names:
        e = _err(None if ev is None else ev.layers.get(n), kind)
        v = None if e is None else e.sqnr_db
        vals.append(_capped(v))
        capped.append(v == math.inf)
    return vals, capped


def _capped(v: float | None) -> float:
    if v is None or math.isnan(v):
        return math.nan
    if math.isinf(v):
        return SQNR_CAP_DB if v > 0 else 0.0
    return v


def _nan(v: int | None) -> float:
    return math.nan if v is None else float(v)


def _db(x: float | None) -> str:
    return db_text(x, missing="—", exact="exact", minus="−")


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _delta_db_html(d: float | None) -> str:
    v = verdict(d)
    if not v:
        return "—"
    assert d is not None  # verdict() is "" for None
    text = db_text(d, signed=True, exact="∞", minus="−").replace("−inf", "−∞") + " dB"
    mark = {"better": "▲ ", "worse": "▼ ", "same": ""}[v]
    return f"<span class='{v}'>{mark}{text}</span>"


def _delta_bytes_html(d: int | None) -> str:
    if d is None:
        return "—"
    v = verdict(float(d), higher_is_better=False, tol=0.0)
    mark = {"better": "▲ ", "worse": "▼ ", "same": ""}[v]
    sign = "+" if d > 0 else "−" if d < 0 else "±"
    return f"<span class='{v}'>{mark}{sign}{format_bytes(abs(d))}</span>"
