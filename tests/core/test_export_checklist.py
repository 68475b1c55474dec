"""The export report's checklist: verdicts from the report value (issue 15, item 10)."""

from __future__ import annotations

import dataclasses

from bitlens.core.export.checklist import Verdict, checklist, counts, summary, verdict_lines
from bitlens.core.export.report import LayerCheck
from tests.core.report_values import failed_report, slow_and_large_report


def _by_check(rows):
    return {r.check: r for r in rows}


def test_a_passing_export_that_is_slow_and_large_gets_warnings_not_a_plain_pass() -> None:
    r = slow_and_large_report()
    rows = checklist(r)
    by = _by_check(rows)
    assert r.passed
    assert by["file size"].verdict is Verdict.WARNING and "+26.6%" in by["file size"].got
    latency = by["latency (CPU)"]
    assert latency.verdict is Verdict.WARNING and "×1.70" in latency.got
    assert by["integer kernels"].verdict is Verdict.WARNING
    assert by["integer kernels"].got.startswith("1 of 2") and "conv2" in by["integer kernels"].got
    assert by["weights stored as planned"].verdict is Verdict.PASS
    assert by["y: as written"].verdict is Verdict.PASS
    assert by["y: deployed"].verdict is Verdict.PASS  # float reassociation is a pass
    assert by["quantized weight bytes"].verdict is Verdict.PASS
    assert any(c.group == "messages" and "stayed float" in c.got for c in rows)
    n = counts(rows)
    assert n[Verdict.FAIL] == 0 and n[Verdict.WARNING] == 4
    assert summary(r, rows) == "fidelity check passed with 4 warning(s)"


def test_a_failed_export_names_each_failing_check() -> None:
    r = failed_report()
    rows = checklist(r)
    by = _by_check(rows)
    assert not r.passed
    assert by["y: deployed"].verdict is Verdict.FAIL and "different" in by["y: deployed"].got
    assert by["y: top-1"].verdict is Verdict.FAIL and "3 changed" in by["y: top-1"].got
    assert by["weights stored as planned"].got == "1 of 2"
    assert by["layer conv2"].verdict is Verdict.FAIL and "float32" in by["layer conv2"].got
    assert by["latency (CPU)"].verdict is Verdict.PASS  # faster than float
    assert by["file size"].verdict is Verdict.PASS  # +1.0%, within 2%
    assert any(c.check == "problem" and c.verdict is Verdict.FAIL for c in rows)
    assert summary(r, rows).startswith("fidelity check FAILED")


def test_integer_kernel_row_compares_no_layer_records(monkeypatch) -> None:
    """The row found the layers that missed an integer kernel with ``la not in ran``: each
    record compared field by field with every one that ran, 1081 comparisons on PP-OCRv4
    rec's 47 layers, twice per export on the window's thread (the status line and the
    report dialog)."""
    r = slow_and_large_report()

    def compared(_self, _other):
        raise AssertionError("two layer records compared")

    monkeypatch.setattr(LayerCheck, "__eq__", compared)
    row = _by_check(checklist(r))["integer kernels"]
    assert row.got.startswith("1 of 2") and "conv2" in row.got and row.verdict is Verdict.WARNING


def test_terminal_lines_name_the_warnings() -> None:
    lines = verdict_lines(slow_and_large_report())
    assert "warning: latency (CPU): got 1.700 ms (×1.70); expected no slower than float" in (
        "\n".join(lines)
    )
    assert any(line.startswith("warning: file size: got 12.4 KiB (+26.6%)") for line in lines)
    assert lines[-1] == "fidelity check passed with 4 warning(s)"


def test_bops_row_states_the_figure_against_float() -> None:
    """The window's report showed no BOPs while the CLI and the report value had them."""
    by = _by_check(checklist(slow_and_large_report()))
    bops = by["bit-operations (BOPs)"]
    assert bops.group == "compute" and bops.verdict is Verdict.PASS
    assert bops.expected == "every layer counted; float 3.07M"
    assert bops.got == "192.0k (16.0× fewer)"  # 3,072,000 / 192,000


def test_bops_left_out_layers_make_a_warning() -> None:
    r = slow_and_large_report()
    assert r.compute is not None
    one_unknown = {**r.compute, "layers": {**r.compute["layers"], "conv2": {"macs": None,
                                                                             "bops": None}},
                   "total_bops": 64_000, "total_bops_float": 1_024_000}  # fmt: skip
    row = _by_check(checklist(dataclasses.replace(r, compute=one_unknown)))["bit-operations (BOPs)"]
    assert row.verdict is Verdict.WARNING
    assert row.got == "64.0k (16.0× fewer); 1 of 2 layers not counted"
    none_known = {**r.compute, "total_bops": 0, "total_bops_float": 0,
                  "layers": {n: {"macs": None, "bops": None} for n in r.compute["layers"]}}
    row = _by_check(checklist(dataclasses.replace(r, compute=none_known)))["bit-operations (BOPs)"]
    assert row.verdict is Verdict.WARNING and row.got.startswith("not counted")
    assert row.expected == "every layer counted"
    # a report without compute figures (older JSON) has no such row
    assert "bit-operations (BOPs)" not in _by_check(checklist(dataclasses.replace(r, compute=None)))
