"""The HTML report (core/htmlreport.py, core/svgchart.py): well-formed, self-contained, holds
the plan, the numbers of the evaluation it was given and the data's provenance; written
atomically and never over an input or a file that is not HTML."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from bitlens.core.compare import compare_evaluations
from bitlens.core.errors import BitlensError
from bitlens.core.htmlreport import ReportContent, render_html, write_report
from bitlens.core.plan import Plan
from bitlens.core.svgchart import nice_ticks
from tests.core.test_compare import calibrated_cnn

VOID = {"meta", "br", "img", "hr", "input", "link"}


class _Checker(HTMLParser):
    """Collects the text and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href") and v and not v.startswith(("data:", "#")):
                self.external.append(v)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (tag, self.stack[-5:])
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def evaluated():
    e = calibrated_cnn(seed=2)
    model = e.model
    a, b = Plan.preset(model.info, "W8A8"), Plan.preset(model.info, "W4A8")
    return model, e, a, e.evaluate(a), b, e.evaluate(b)


def test_report_is_well_formed_and_holds_the_numbers(evaluated) -> None:
    model, engine, a, ev_a, b, ev_b = evaluated
    cmp = compare_evaluations(a, ev_a, b, ev_b)
    html = render_html(ReportContent(model.info, "cnn.onnx", b, ev_b, engine.data.summary(),
                                     comparison=cmp, created="2026-01-01"))  # fmt: skip
    p = _Checker()
    p.feed(html)
    p.close()
    assert p.stack == [] and p.external == []  # closed, and nothing fetched from elsewhere
    text = " ".join(p.text)
    for section in ("Summary", "Data", "Error and size per layer", "Layers", "The plan",
                    "This plan (B) against the pinned plan A"):  # fmt: skip
        assert section in text
    assert "random inputs" in text and "x [3, 3, 8, 8]" in text  # provenance, with shapes
    out = ev_b.outputs["y"].error.sqnr_db
    assert f"SQNR {out:.1f} dB" in text
    conv2 = ev_b.layers["conv2"].accumulated.sqnr_db
    assert f"{conv2:.1f}" in text
    delta = cmp.layer("conv2").delta_db("accumulated")
    assert f"▼ {delta:+.1f} dB".replace("-", "−") in text
    # the embedded plan is the plan itself
    plan_json = re.search(r"<pre>(.*?)</pre>", html, re.S).group(1)
    import html as _html

    assert json.loads(_html.unescape(plan_json)) == json.loads(b.to_json())
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert len(svgs) == 2
    for svg in svgs:
        root = ET.fromstring(svg)  # valid XML
        bars = root.findall("{http://www.w3.org/2000/svg}rect")
        assert len(bars) > 3


def test_report_without_data_says_so(evaluated) -> None:
    model, _e, _a, _ea, b, _ev_b = evaluated
    html = render_html(ReportContent(model.info, "cnn.onnx", b, None, None))
    assert "No input data" in html and "not evaluated" in html


def test_write_report_guards_inputs_and_non_html(tmp_path) -> None:
    html = "<!DOCTYPE html><html><body>x</body></html>\n"
    out = write_report(tmp_path / "r.html", html)
    assert out.read_text() == html
    write_report(out, html.replace("x", "y"))  # replacing an HTML page is fine
    photo = tmp_path / "photo.html"
    photo.write_bytes(b"\x89PNG....")
    with pytest.raises(BitlensError, match="not an HTML page"):
        write_report(photo, html)
    model_file = tmp_path / "m.onnx"
    model_file.write_bytes(b"\x08\x07")
    with pytest.raises(BitlensError, match="input of this run"):
        write_report(model_file, html, inputs=[model_file])
    assert model_file.read_bytes() == b"\x08\x07"
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_nice_ticks_cover_the_range() -> None:
    assert nice_ticks(0, 37) == [0, 10, 20, 30, 40]
    assert nice_ticks(-3, 42)[0] <= -3 and nice_ticks(-3, 42)[-1] >= 42
    assert nice_ticks(0, 0) == [0, 0.5, 1.0]  # an empty range still gets an axis


def test_size_chart_tooltips_spell_bytes_as_the_tables_do(evaluated) -> None:
    """Item 12 of issue 15: one convention. The size chart's tooltips read "0.3516 KiB"
    where the layer table of the same report read "360 B"."""
    from bitlens.core.units import format_bytes

    model, _e, _a, _ea, b, ev_b = evaluated
    html = render_html(ReportContent(model.info, "cnn.onnx", b, ev_b, None))
    size_svg = re.findall(r"<svg.*?</svg>", html, re.S)[1]
    tips = [t.text or "" for t in ET.fromstring(size_svg).iter("{http://www.w3.org/2000/svg}title")]
    for layer in model.info.layers:
        plan = format_bytes(ev_b.layers[layer.name].bytes_after)
        assert f"{layer.name} · plan: {plan}" in tips, (plan, tips)
        assert f"{layer.name} · float: {format_bytes(layer.nbytes)}" in tips


def test_report_counts_bops_per_layer_and_says_unknown(evaluated) -> None:
    """The Summary's compute line and the Layers table's BOPs column come from the one
    Compute value; a layer whose MACs are unknown reads "unknown", never 0."""
    from bitlens.core.compute import compute_of

    model, engine, _a, _ea, b, ev_b = evaluated
    d = compute_of(engine).to_dict(model.info, b)
    html = render_html(ReportContent(model.info, "cnn.onnx", b, ev_b, None, compute=d))
    assert f"{d['total_macs']:,} MACs" in html
    assert f"<td class='num'>{d['layers']['conv2']['bops']:.3g}</td>" in html
    d["layers"]["conv2"] = {"macs": None, "bops": None}
    html = render_html(ReportContent(model.info, "cnn.onnx", b, ev_b, None, compute=d))
    assert "<td class='num'>unknown</td>" in html and f"of {len(d['layers'])} layers unknown" in html
