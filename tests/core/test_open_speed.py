"""The open path's faster ways (issue 11: open + calibrate + first evaluation) give the
numbers of the straightforward ones."""

from __future__ import annotations

import mmap

import numpy as np
import onnx
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, weightfeeds
from bitlens.core.engine.extremes import extremes
from bitlens.core.engine.reference import _finite
from bitlens.core.engine.session import make_session
from bitlens.core.model import loader
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.builders import conv_net
from tests.core.test_engine_scale import deep_mlp


def _plans(info) -> list[Plan]:
    w8a8 = Plan.preset(info, "W8A8")
    first = info.layer_names[0]
    return [
        w8a8,
        Plan.preset(info, "W4A8"),
        w8a8.with_choices({first: LayerChoice.of("bin ch", "uint8 asym")}),
    ]


@pytest.mark.parametrize(
    ("build", "pool_min"),
    [(lambda: deep_mlp(6), 0), (conv_net, 0), (conv_net, 800)],
    ids=["mlp", "conv", "conv-large"],
)
def test_weights_quantized_two_at_a_time_equal_those_quantized_in_turn(
    build, pool_min, monkeypatch
) -> None:
    """Quantized values, codes, weight errors and whole evaluations: every weight on the
    two threads, or only those of at least POOL_MIN_BYTES (conv_net's weights: 640, 864
    and 4608 bytes) and the rest in turn."""
    import threading

    monkeypatch.setattr(weightfeeds, "POOL_MIN_BYTES", pool_min)
    loaded = from_proto(build())
    sizes = sorted(w.nbytes for la in loaded.info.layers for w in la.weights)
    assert pool_min == 0 or sizes[0] < pool_min <= sizes[-2]  # two large ones at least
    data = Dataset.random(loaded.info, n=4, seed=2, dims={"N": 2})
    threads: list[str] = []
    real = weightfeeds.quantize_weight

    def spy(*a, **k):
        threads.append(threading.current_thread().name)
        return real(*a, **k)

    monkeypatch.setattr(weightfeeds, "quantize_weight", spy)
    two = Engine(loaded, data, device="cpu")
    got = [two.evaluate(p) for p in _plans(loaded.info)]
    assert any(t.startswith("bitlens-q") for t in threads)  # the pool quantized
    assert pool_min == 0 or "MainThread" in threads  # and the small ones in turn
    monkeypatch.setattr(weightfeeds, "QUANTIZE_WORKERS", 1)
    one = Engine(loaded, data, device="cpu")
    assert [one.evaluate(p) for p in _plans(loaded.info)] == got
    assert list(one._wcache) == list(two._wcache)  # cached in the same order
    assert one._werr == two._werr  # weight errors computed ahead in the pool, or in turn
    for key, q in one._wcache.items():
        np.testing.assert_array_equal(two._wcache[key].values, q.values)
        np.testing.assert_array_equal(two._wcache[key].q.codes, q.q.codes)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_min_max_finiteness_equals_isfinite_and_the_separate_min_max(dtype) -> None:
    """reference._finite on a value's min and max (extremes.py): on a calibration feed, the min
    and max it merges equal numpy's, and it answers as np.isfinite(...).all() for NaN, +-inf
    and finite values."""

    def finite(v: np.ndarray, name: str, minmax: dict | None) -> bool:
        return _finite(extremes([v], None)[0], name, minmax)

    rng = np.random.default_rng(3)
    values = (rng.standard_normal((5, 7)) * 3).astype(dtype)
    for poison in (None, np.nan, np.inf, -np.inf):
        v = values.copy()
        if poison is not None:
            v[2, 3] = poison
        minmax: dict[str, tuple[float, float]] = {"t": (-0.5, 0.25)}
        assert finite(v, "t", minmax) == bool(np.isfinite(v).all())
        assert finite(v, "t", None) == bool(np.isfinite(v).all())
        if poison is None:
            assert minmax["t"] == (
                min(-0.5, float(v.min())),
                max(0.25, float(v.max())),
            )
    assert finite(np.zeros((0, 3), dtype), "t", {}) and finite(np.arange(4), "t", {})


def test_the_float_reference_keeps_each_tensors_min_and_max_on_the_calibration_feeds() -> None:
    loaded = from_proto(deep_mlp(4))
    data = Dataset.random(loaded.info, n=6, seed=2, dims={"N": 5})
    engine = Engine(loaded, data, device="cpu")
    list(engine.prepare())
    # every float tensor: the float graph (its session declares fewer, float_outputs.py)
    sess = make_session(engine._session_for({})[0].model, "cpu")
    weights = engine._float_weights()
    names = [o.name for o in sess.get_outputs()]
    runs = [engine._run(sess, names, {**data.samples[i], **weights}) for i in data.calibration]
    engine._measure_later(names)  # those it left for when a plan needs them (range_sources)
    assert not engine._minmax_later
    for k, name in enumerate(names):
        want = (min(float(r[k].min()) for r in runs), max(float(r[k].max()) for r in runs))
        assert engine._minmax[name] == want


def test_a_file_read_into_a_populated_map_loads_as_one_read_into_a_bytearray(
    tmp_path, monkeypatch
) -> None:
    """loader._buffer: the file's bytes in anonymous memory mapped at once (Linux) give the
    model a bytearray gives; the map is closed once the proto is parsed."""
    path = tmp_path / "conv.onnx"
    onnx.save(conv_net(), path)
    made: list = []
    real = loader._buffer

    def spy(size: int):
        made.append(real(size))
        return made[-1]

    monkeypatch.setattr(loader, "_buffer", spy)
    mapped = loader.load_model(path)
    if hasattr(mmap, "MAP_POPULATE"):
        assert isinstance(made[0], mmap.mmap) and made[0].closed
    monkeypatch.setattr(loader, "_buffer", bytearray)
    plain = loader.load_model(path)
    assert mapped.graph_proto.SerializeToString() == plain.graph_proto.SerializeToString()
    assert mapped.info == plain.info
