"""The fuzz worker: ``python -m tests.fuzz.worker`` reads cases as JSON lines on stdin,
runs each as the product does under an address-space limit, and answers with its outcome."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from tests.fuzz import OK_OUTCOMES, Case
from tests.fuzz.models import seed_models


# -- the worker ------------------------------------------------------------------------------------
def protocol_stream() -> TextIO:
    """The worker's answers go to the stdout it was started with; everything else written to
    stdout afterwards (ONNX Runtime prints "EP Error ..." there when a provider fails, from
    Python or C) goes to stderr, so the runner only ever reads JSON lines."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return answers


def _worker_main() -> int:  # pragma: no cover - runs in the subprocess
    import resource

    from bitlens.cli.inspect import to_json, to_text
    from bitlens.core.data import Dataset
    from bitlens.core.engine import Engine, bind
    from bitlens.core.errors import BitlensError
    from bitlens.core.formats import parse_format
    from bitlens.core.graph_layout import layout_model
    from bitlens.core.limits import memory_budget
    from bitlens.core.model.loader import from_proto, load_model
    from bitlens.core.plan import Plan
    from bitlens.core.plan_schema import read_json_file
    from bitlens.core.report import inspect_model
    from bitlens.core.viewdata import distribution

    models = seed_models()
    infos = {k: from_proto(v).info for k, v in models.items()}
    formats = [parse_format("int8 sym ch"), parse_format("nf4 blk64")]
    budget = memory_budget()
    base_rss = _rss()
    vm = _vm_size()
    limit = vm + budget + (512 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))

    def run(case: Case) -> None:
        if case.kind == "model":
            m = load_model(case.path)  # then what `bitlens inspect` and the window compute
            report = inspect_model(m, formats)
            json.dumps(to_json(report))
            to_text(report).encode("utf-8")
            layout_model(m.info)
            for layer in m.info.layers[:4]:
                if layer.weights:
                    w = layer.weights[0]
                    distribution(m.weight(w), bind(formats[0], w))
            if case.engine:  # what the window does next: data, engine, calibration, evaluation
                eng = Engine(m, Dataset.random(m.info, n=2), device="cpu")
                for _ in eng.calibrate("minmax"):
                    pass
                eng.evaluate(Plan.preset(m.info, "W8A8"))
        elif case.kind in ("npz", "npy"):
            Dataset.from_npz(case.path, infos[case.model])
        elif case.kind == "wav":
            Dataset.from_wav(case.path, infos[case.model])
        elif case.kind == "image":
            Dataset.from_images(case.path, infos[case.model])
        elif case.kind == "plan":
            Plan.from_dict(infos[case.model], read_json_file(case.path))
        elif case.kind == "overrides":
            Plan.from_ort_overrides(infos[case.model], read_json_file(case.path, "overrides"))

    answers = protocol_stream()
    print(json.dumps({"ready": True}), file=answers, flush=True)
    for line in sys.stdin:
        case = Case(**json.loads(line))
        t0 = time.perf_counter()
        try:
            run(case)
            outcome, message = "loaded", ""
        except BitlensError as exc:
            message = str(exc)
            outcome = "error" if message and "\n" not in message else "bad_message"
        except MemoryError as exc:
            import traceback

            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            outcome, message = "memory", f"MemoryError at {where}"
        except RecursionError as exc:
            outcome, message = "crash", f"RecursionError: {exc}"
        except Exception as exc:
            import traceback

            tb = traceback.extract_tb(exc.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            outcome, message = "crash", f"{type(exc).__name__} at {where}: {str(exc)[:200]}"
        if outcome in OK_OUTCOMES and _rss() - base_rss > budget:
            outcome, message = "over_budget", f"peak RSS {_rss() >> 20} MiB"
        # The peak RSS is a high-water mark and a MemoryError may leave the heap ragged:
        # after either, a fresh worker runs the next case.
        restart = outcome in ("over_budget", "memory")
        print(json.dumps({"outcome": outcome, "message": message, "restart": restart,
                          "seconds": time.perf_counter() - t0}), file=answers, flush=True)  # fmt: skip
        if restart:
            return 0
    return 0


def _rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 30


if __name__ == "__main__":
    raise SystemExit(_worker_main())
