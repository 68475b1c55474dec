"""A fuzzer for everything Bitlens reads: models, data files, plans and ORT overrides.

Shared by ``tests/core/test_fuzz.py`` (a few hundred cases in CI) and
``benchmarks/fuzz.py`` (10,000+ on demand). Cases are generated here from a
seed, written to a scratch folder, and run one by one in a worker
subprocess (``python -m tests.fuzz.worker``) that:

- limits its address space (``resource.setrlimit(RLIMIT_AS)``) to its size
  after imports plus a margin over Bitlens's memory budget, so a runaway
  allocation fails fast instead of taking the machine;
- runs each case as the product does (a model: ``load_model`` then what
  ``bitlens inspect`` computes and prints; data: ``Dataset.from_*``; a plan:
  the readers the CLI and window use) and answers with an outcome;
- reports its peak RSS, so growth past the budget is counted even when it
  stayed under the address-space limit.

The parent kills a worker that does not answer within the per-case timeout
(a hang) and starts a new one. Outcomes: ``loaded``, ``error`` (the
project's own error type with a one-line message), and the failures
``bad_message``, ``crash``, ``memory``, ``over_budget``, ``hang``, ``died``.

Modules: ``models`` (seed models, mutations, model cases), ``datacases`` (data,
plan and overrides cases), ``worker`` (the subprocess), ``runner`` (timeouts,
restarts, the report).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "resources" / "samples"
OK_OUTCOMES = frozenset({"loaded", "error"})
FAILURES = ("bad_message", "crash", "memory", "over_budget", "hang", "died")
MODEL_KINDS = ("model",)
DATA_KINDS = ("npz", "npy", "wav", "image", "plan", "overrides")


@dataclass(frozen=True)
class Case:
    kind: str  # "model", "npz", "npy", "wav", "image", "plan", "overrides"
    path: str  # the file (or folder for images) to read
    base: str  # which seed file it was made from
    mutation: str  # what was done to it
    model: str = ""  # for data and plans: the model they are read against
    engine: bool = False  # models: also build the engine on random data, calibrate, evaluate W8A8


@dataclass
class Result:
    case: Case
    outcome: str
    message: str = ""
    seconds: float = 0.0


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)

    def counts(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    def failures(self) -> list[Result]:
        return [r for r in self.results if r.outcome not in OK_OUTCOMES]
