"""The fidelity check's figures reduced one sample at a time (bitlens.core.export.reductions)
equal the ones it computed before on every sample's values concatenated; the simulated codes
kept in a scratch file (bitlens.core.export.codestore) give the same report as in memory."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bitlens.core.engine import Engine
from bitlens.core.export import codestore, fidelity, probes
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.export.deployed import _code_distance, flat_cat, max_abs
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.reductions import CodeAgreement, LsbMax, MaxAbsDiff
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.core.export_models import conv_net, random_feeds


def _rec(kind: str, fmt: str = "int8 sym", scale: float | None = 0.1) -> QuantizerRecord:
    return QuantizerRecord("l", "a", "a_q", fmt, kind, "a_c", scale, 0.0, "", 13)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _samples(rng: np.random.Generator, dtype: type, special: bool) -> list[np.ndarray]:
    sizes = [7, 0, 40, 1]  # an empty sample too
    out = []
    for n in sizes:
        if np.dtype(dtype).kind == "f":
            v = rng.normal(0, 3, n).astype(dtype)
            if special and n > 5:
                v[2] = np.nan if n == 7 else np.inf
        else:
            info = np.iinfo(dtype)
            v = rng.integers(info.min, info.max, n, endpoint=True).astype(dtype)
        out.append(v.reshape(1, -1) if n else v)
    return out


@pytest.mark.parametrize("special", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8, np.int8])
def test_max_abs_diff_equals_the_concatenated_max(dtype: type, special: bool) -> None:
    rng = np.random.default_rng(1)
    a, b = _samples(rng, dtype, special), _samples(rng, dtype, special)
    acc = MaxAbsDiff()
    with np.errstate(invalid="ignore"):  # inf - inf
        for x, y in zip(a, b, strict=True):
            acc.add(x, y)
        assert _same(acc.value, max_abs(flat_cat(a), flat_cat(b)))
    empty = MaxAbsDiff()
    empty.add(np.zeros(0), np.zeros(0))
    assert empty.value == max_abs(np.zeros(0), np.zeros(0)) == 0.0
    odd = MaxAbsDiff()
    odd.add(np.zeros(3), np.zeros(4))
    assert odd.value == max_abs(np.zeros(3), np.zeros(4)) == math.inf


@pytest.mark.parametrize(
    ("kind", "fmt", "dtype"),
    [
        ("qdq", "uint8 asym", np.uint8),
        ("qdq", "int8 sym", np.int8),
        ("int", "int4 sym", np.float32),
        ("fp16", "fp16", np.float32),
        ("bf16", "bf16", np.float32),
        ("fp8e4m3fn", "fp8e4m3fn", np.float32),
    ],
)
@pytest.mark.parametrize("special", [False, True])
def test_lsb_max_equals_the_concatenated_distance(
    kind: str, fmt: str, dtype: type, special: bool
) -> None:
    """The largest LSB distance, a float format's step taken at the largest magnitude over
    every sample, as the check took it from the concatenation."""
    rec = _rec(kind, fmt, 0.05 if kind.startswith("fp8") else 0.1)
    rng = np.random.default_rng(2)
    want = _samples(rng, dtype, special and not probes.integer_codes(rec))
    got = [w + rng.integers(-2, 3, w.shape).astype(dtype) if w.size else w for w in want]
    acc = LsbMax(rec)
    a, b = flat_cat(want), flat_cat(got)
    with np.errstate(invalid="ignore"):  # inf - inf
        for w, g in zip(want, got, strict=True):
            acc.add(w, g)
        before = float(probes.lsb_distance(rec, a, b).max()) if a.size else 0.0
    assert _same(acc.value, before)
    assert LsbMax(rec).value == 0.0  # no values: as an empty concatenation


def test_code_agreement_equals_the_concatenated_distance() -> None:
    """Worst LSB distance and share of differing codes over samples, as _code_distance's
    concatenation gave them: inf and 1.0 when a sample does not match or nothing was seen."""
    rec = _rec("qdq", "uint8 asym")
    rng = np.random.default_rng(3)
    refs = [rng.integers(0, 256, (1, 4, 3, 3)).astype(np.uint8) for _ in range(3)]
    # the deployed codes channels-last for one sample (ONNX Runtime's NHWC transformer)
    gots = [np.clip(r.astype(np.int16) + rng.integers(-1, 2, r.shape), 0, 255).astype(np.uint8)
            for r in refs]  # fmt: skip
    gots[1] = np.moveaxis(gots[1], 1, -1).copy()
    acc = CodeAgreement()
    parts = []
    for r, g in zip(refs, gots, strict=True):
        d = _code_distance(rec, r, g, 0)
        acc.add(d)
        parts.append(d)
    diff = np.concatenate(parts)
    assert acc.worst == float(diff.max())
    assert acc.share == float(np.mean(diff > 0))
    bad = CodeAgreement()
    bad.add(parts[0])
    bad.add(_code_distance(rec, refs[0], np.zeros((1, 5, 3, 3), np.uint8), 0))  # no layout fits
    assert (bad.worst, bad.share) == (math.inf, 1.0)
    assert (CodeAgreement().worst, CodeAgreement().share) == (math.inf, 1.0)


def test_sample_codes_spill_and_copy() -> None:
    """Beyond its limit the codes go to the scratch file and read back equal; kept ones are
    copies, not the arrays given (ONNX Runtime's outputs hold its arena)."""
    rng = np.random.default_rng(4)
    given = [{"a": rng.integers(0, 255, (1, 64, 64, 64)).astype(np.uint8),
              "b": rng.normal(0, 1, (1, 8)).astype(np.float32)} for _ in range(3)]  # fmt: skip
    codes = codestore.SampleCodes(limit=0)
    for g in given:
        codes.append(g)
    assert len(codes) == 3
    assert codes.spilled_bytes == sum(v.nbytes for g in given for v in g.values())
    for k, g in enumerate(given):
        for name, v in g.items():
            assert np.array_equal(codes[k][name], v)
            assert not np.shares_memory(codes[k][name], v)
    assert np.array_equal(codes[-1]["a"], given[-1]["a"])
    codes.close()
    assert len(codes) == 0


def test_report_is_the_same_with_codes_spilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fidelity check with every sample's codes in memory and with all but none kept
    (read back from the scratch file) reaches the same figures, verdicts and notes."""
    model = from_proto(conv_net(channels=8))
    engine = Engine(model, random_feeds(model.info, 6), device="cpu")
    drain(engine.calibrate())
    plan = Plan.preset(engine.info, "W8A8")
    result = drain(export(engine, plan, tmp_path / "o.onnx", ExportOptions()))
    kept = drain(fidelity.check_fidelity(engine, plan, result, latency_budget_s=0.0))
    spilled: list[int] = []
    real = codestore.SampleCodes

    def spilling(limit: int | None = None) -> codestore.SampleCodes:
        codes = real(limit=0)
        spilled.append(id(codes))
        return codes

    monkeypatch.setattr(codestore, "MIN_IN_MEMORY", 0)
    monkeypatch.setattr(fidelity, "SampleCodes", spilling)
    again = drain(fidelity.check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert spilled
    assert kept.failures == again.failures and kept.notes == again.notes
    assert repr(kept.quantizers) == repr(again.quantizers)
    assert repr(kept.outputs) == repr(again.outputs)
    assert repr(kept.layers) == repr(again.layers)
    assert any(q.max_lsb is not None for q in kept.quantizers)  # codes were compared
