"""A few hundred fuzzed models, data files, plans and ORT overrides, under a memory limit.

Every case must end as "loaded" or as a BitlensError with a one-line
message: no other exception, no MemoryError, no growth past the memory
budget, no hang past the per-case timeout (see tests/fuzz/; the full
run is ``benchmarks/fuzz.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("resource", reason="the fuzz worker limits memory with POSIX setrlimit")

from tests.fuzz import Report
from tests.fuzz.datacases import data_cases
from tests.fuzz.models import model_cases
from tests.fuzz.runner import Runner, run_cases

MODEL_CASES = 600
DATA_CASES = 300  # 50 of each: npz, npy, wav, image, plan, overrides
ENGINE_CASES = 200


def _check(report: Report) -> None:
    bad = report.failures()
    lines = [
        f"{r.outcome}: {r.case.kind} {r.case.base} [{r.case.mutation}] {r.message}" for r in bad
    ]
    assert not bad, f"{len(bad)} failures, counts {dict(report.counts())}:\n" + "\n".join(
        lines[:20]
    )


@pytest.fixture(scope="module")
def runner():
    r = Runner(timeout=20.0, budget="512M")
    yield r
    r.close()


@pytest.mark.timeout(240)
def test_fuzzed_models(runner: Runner, tmp_path: Path) -> None:
    report = run_cases(model_cases(MODEL_CASES, seed=2026, scratch=tmp_path), runner)
    _check(report)
    counts = report.counts()
    assert counts["loaded"] > 0 and counts["error"] > 0  # the mutations reach both ways


@pytest.mark.timeout(240)
def test_fuzzed_data_plans_and_overrides(runner: Runner, tmp_path: Path) -> None:
    report = run_cases(data_cases(DATA_CASES, seed=2026, scratch=tmp_path), runner)
    _check(report)
    kinds = {r.case.kind for r in report.results}
    assert kinds == {"npz", "npy", "wav", "image", "plan", "overrides"}


@pytest.mark.timeout(240)
def test_fuzzed_models_through_the_engine(runner: Runner, tmp_path: Path) -> None:
    """What the window does after loading: random data, an engine, calibration, evaluation."""
    report = run_cases(model_cases(ENGINE_CASES, seed=7, scratch=tmp_path, engine=True), runner)
    _check(report)
    assert report.counts()["loaded"] > 0
