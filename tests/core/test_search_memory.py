"""The search's memory bound (core/search/memory.py) and the float reference's arena on
feeds of several shapes (Engine.prepare)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, arena_release
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.search import Budget, SearchOptions, memory, search
from tests.core.engine_models import small_cnn
from tests.core.test_cli_entry import run_cli

FAST_CLI = ("--samples", "6", "--size-ratio", "0.8")
FAST = dict(front_probes=4, refine_evaluations=8, references=("W8A8",))


def _search(limit: int, monkeypatch: pytest.MonkeyPatch) -> tuple[object, int, int]:
    """A size-budget search of the small CNN under ``limit``; (result, arena releases,
    session drops) counted while it ran."""
    model = from_proto(small_cnn())
    data = Dataset.random(model.info, n=9, seed=3, calibration_fraction=3 / 9)
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    counts = {"release": 0, "drop": 0}
    real_release, real_drop = memory.release_arena, engine.drop_sessions

    def release() -> None:
        counts["release"] += 1
        real_release()

    def drop() -> None:
        counts["drop"] += 1
        real_drop()

    monkeypatch.setattr(memory, "release_arena", release)
    monkeypatch.setattr(engine, "drop_sessions", drop)
    gen = search(engine, SearchOptions(Budget(size_ratio=0.8), memory_limit=limit, **FAST))
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value, counts["release"], counts["drop"]


def test_bound_frees_between_steps_and_keeps_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a bound below what the process holds, every step gives the arena and the heap
    back and drops the engine's sessions; the plan, the front and the errors are those of
    an unbounded search with the same seed (what is dropped is rebuilt with the same values)."""
    free, r0, d0 = _search(1 << 50, monkeypatch)
    tight, r1, d1 = _search(1, monkeypatch)
    assert (r0, d0) == (0, 0)
    assert r1 > 10 and d1 > 10, (r1, d1)
    assert tight.best.plan.choices == free.best.plan.choices  # (engines of their own)
    assert tight.best.file_bytes == free.best.file_bytes
    assert tight.best.error == free.best.error
    assert [(p.plan.choices, p.file_bytes, p.error) for p in tight.front] == [
        (p.plan.choices, p.file_bytes, p.error) for p in free.front
    ]
    assert tight.evaluations == free.evaluations


def test_default_bound_follows_the_model_size() -> None:
    """24 times the model file, at least 384 MiB, within the process's memory budget."""
    model = from_proto(small_cnn())
    engine = Engine(model, Dataset.random(model.info, n=2, seed=0), device="cpu")
    assert memory.search_memory(engine) == memory.SEARCH_MEMORY_MIN
    assert memory.search_memory(engine, 5 << 20) == 5 << 20
    big = type("Big", (), {"nbytes": 100 << 20})()
    assert memory.search_memory(type("E", (), {"model": big})()) == 2400 << 20  # type: ignore[arg-type]


def _widths_model() -> bytes:
    """x [1, 8, W] -> MatMul-free chain: Mul by a weight, Relu, Mul (W dynamic)::

        x --Mul(w1)--Relu--Mul(w2)--> y
    """
    w1 = numpy_helper.from_array(np.full((8, 1), 0.5, np.float32), "w1")
    w2 = numpy_helper.from_array(np.full((8, 1), 2.0, np.float32), "w2")
    g = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "w1"], ["a"]),
            helper.make_node("Relu", ["a"], ["b"]),
            helper.make_node("Mul", ["b", "w2"], ["y"]),
        ],
        "widths",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, "w"])],
        [w1, w2],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_float_reference_gives_back_the_arena_as_feeds_grow_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Feeds of 4 widths grew ONNX Runtime's arena by a run each (PP-OCRv5's recognizer:
    850 MiB of dropped buffers after 4 feeds, none given back before the first evaluation).
    Now, past the first feed, the float reference gives the arena back whenever the RSS grew
    by more than a feed since (the RSS reads here grow by 1 GiB a read)."""
    rng = np.random.default_rng(0)
    samples = tuple({"x": rng.normal(size=(1, 8, w)).astype(np.float32)} for w in (5, 7, 9, 11))
    model = from_proto(_widths_model())
    engine = Engine(model, Dataset(samples), device="cpu")
    reads, released = iter(range(1, 1000)), []
    monkeypatch.setattr(arena_release, "resident_bytes", lambda: next(reads) << 30)
    monkeypatch.setattr(arena_release, "release_arena", lambda: released.append(1))
    for _ in engine.prepare():
        pass
    assert len(released) == 3  # after feeds 2, 3 and 4
    assert engine._arena.floor is None  # the next maybe_release gives back the last feed's


def test_cli_states_the_bound_and_rejects_a_bad_one(tmp_path) -> None:
    path = tmp_path / "cnn.onnx"
    path.write_bytes(small_cnn().SerializeToString())
    out = tmp_path / "plan.json"
    res = run_cli("search", str(path), *FAST_CLI, "--search-memory", "300M", "-o", str(out),
                  "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["search_memory"] == 300 << 20
    res = run_cli("search", str(path), *FAST_CLI, "-o", str(out))
    assert "memory: at most 384.0 MiB kept resident between the search's steps" in res.stdout
    res = run_cli("search", str(path), "--search-memory", "lots", "-o", str(tmp_path / "p.json"))
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].endswith(
        "--search-memory='lots': expected a size such as 4G"
    ), res.stderr
    assert not (tmp_path / "p.json").exists()


def test_outputs_over_feeds_of_several_widths_give_back_the_arena(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same in ``run_outputs`` (the search's float outputs of its fitted and held-back
    feeds came after the float reference: 937 MiB on PP-OCRv5 rec's 4 widths); the outputs
    are those of a run without releases."""
    rng = np.random.default_rng(1)
    samples = tuple({"x": rng.normal(size=(1, 8, w)).astype(np.float32)} for w in (5, 7, 9, 11))
    model = from_proto(_widths_model())
    engine = Engine(model, Dataset(samples, calibration=(0,), evaluation=(1, 2, 3)), device="cpu")
    for _ in engine.prepare():
        pass
    plain = engine.run_outputs(Plan(model.info), [0, 1, 2, 3])
    reads, released = iter(range(1, 1000)), []
    monkeypatch.setattr(arena_release, "resident_bytes", lambda: next(reads) << 30)
    monkeypatch.setattr(arena_release, "release_arena", lambda: released.append(1))
    got = engine.run_outputs(Plan(model.info), [0, 1, 2, 3])
    assert len(released) == 3
    for a, b in zip(plain["y"], got["y"], strict=True):
        np.testing.assert_array_equal(a, b)
