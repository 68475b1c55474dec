"""Feeds of different shapes (a folder of .npz/.npy, numbered keys in one .npz), batched by
equal shape and never padded; calibration and evaluation on them against plain ORT."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bitlens.core.data import MAX_BATCH, Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import DataError
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.data_models import line_feeds, ocr_line
from tests.core.test_engine import plain_run, rewritten

WIDTHS = [12, 20, 12, 31, 20, 12, 9, 31]


@pytest.fixture(scope="module")
def model():
    return from_proto(ocr_line())


def _save_folder(tmp_path, feeds, labels=None):
    folder = tmp_path / "lines"
    folder.mkdir()
    for i, f in enumerate(feeds):
        if labels is None:
            np.save(folder / f"line{i}.npy", f["x"])
        else:
            np.savez(folder / f"line{i}.npz", x=f["x"], labels=labels[i])
    return folder


def _rows(ds: Dataset, indices) -> list[np.ndarray]:
    """Every batch row of the given feeds, in feed order."""
    return [row for i in indices for row in ds.samples[i]["x"]]


def test_folder_of_npy_feeds_keeps_every_shape_and_batches_equal_ones(tmp_path, model) -> None:
    feeds = line_feeds(WIDTHS)
    ds = Dataset.from_folder(_save_folder(tmp_path, feeds), model.info)
    # line0..3 calibrate, line4..7 evaluate; 12-wide lines 0 and 2 share one batch
    cal = [ds.samples[i]["x"].shape for i in ds.calibration]
    ev = [ds.samples[i]["x"].shape for i in ds.evaluation]
    assert cal == [(2, 1, 8, 12), (1, 1, 8, 20), (1, 1, 8, 31)]
    assert ev == [(1, 1, 8, 20), (1, 1, 8, 12), (1, 1, 8, 9), (1, 1, 8, 31)]
    # nothing padded, nothing lost: the rows are the files' arrays
    got = sorted(_rows(ds, ds.calibration), key=lambda r: (r.shape, float(r.sum())))
    want = sorted((f["x"][0] for f in feeds[:4]), key=lambda r: (r.shape, float(r.sum())))
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    assert "first 4 of 8 feeds calibrate" in ds.split
    summary = ds.summary()
    assert summary.calibration.feeds == 3 and summary.calibration.rows == 4
    assert "[2, 1, 8, 12]" in summary.calibration.describe()
    assert not summary.warning


def test_batches_stop_at_max_batch_rows(model) -> None:
    ds = Dataset.from_feeds(
        model.info, line_feeds([7] * (2 * MAX_BATCH + 3)), calibration_fraction=1.0
    )
    sizes = sorted(ds.samples[i]["x"].shape[0] for i in (*ds.calibration, *ds.evaluation))
    assert sum(sizes) == 2 * MAX_BATCH + 3 and max(sizes) == MAX_BATCH


def test_fixed_batch_of_one_runs_each_feed_alone(tmp_path) -> None:
    info = from_proto(ocr_line(batch=1)).info
    ds = Dataset.from_feeds(info, line_feeds([10, 10, 10, 10]))
    assert all(s["x"].shape == (1, 1, 8, 10) for s in ds.samples) and len(ds.samples) == 4


def test_rank_minus_one_feed_gets_a_batch_axis(model) -> None:
    ds = Dataset.from_feeds(model.info, [{"x": np.zeros((1, 8, 5), np.float32)}] * 2)
    assert ds.samples[0]["x"].shape == (1, 1, 8, 5)


def test_numbered_npz_with_labels_per_feed(tmp_path, model) -> None:
    feeds = line_feeds([10, 14, 10, 14], batch=2)
    arrays = {f"x/{i}": f["x"] for i, f in enumerate(feeds)}
    arrays |= {f"labels/{i}": np.array([i, 10 + i]) for i in range(4)}
    path = tmp_path / "lines.npz"
    np.savez(path, **arrays)
    ds = Dataset.from_npz(path, model.info)
    assert [ds.samples[i]["x"].shape for i in ds.evaluation] == [(2, 1, 8, 10), (2, 1, 8, 14)]
    assert list(ds.eval_labels) == [2, 12, 3, 13]
    assert ds.source == "lines.npz (4 feeds)"


def test_folder_labels_follow_their_feed(tmp_path, model) -> None:
    feeds = line_feeds([10, 10, 10, 10])
    ds = Dataset.from_folder(_save_folder(tmp_path, feeds, labels=[[0], [1], [2], [3]]), model.info)
    assert list(ds.eval_labels) == [2, 3]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x/0": np.zeros((1, 1, 8, 4)), "x": np.zeros((1, 1, 8, 4))}, "mixes numbered feeds"),
        ({"x/0": np.zeros((1, 1, 8, 4)), "x/2": np.zeros((1, 1, 8, 4))}, "feed numbers skip 1"),
        ({"x/0": np.zeros((1, 1, 7, 4))}, r"feed 0: input 'x' expects shape \[N, 1, 8, width\]"),
        ({"x/0": np.zeros((1, 1, 8, 4)), "y/0": np.zeros(3)}, "'y' is not a model input"),
        ({"x/0": np.zeros((2, 1, 8, 4)), "labels/0": np.zeros(3)}, "3 labels for 2 rows"),
        (
            {"x/0": np.zeros((1, 1, 8, 4)), "x/1": np.zeros((1, 1, 8, 4)), "labels/0": np.zeros(1)},
            "labels are missing for feed 1",
        ),
    ],
)
def test_bad_numbered_npz_names_the_problem(tmp_path, model, arrays, message) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        Dataset.from_npz(path, model.info)


def test_empty_folder_and_folder_with_numbered_keys(tmp_path, model) -> None:
    with pytest.raises(DataError, match=r"no \.npz or \.npy feeds"):
        Dataset.from_folder(tmp_path, model.info)
    np.savez(tmp_path / "a.npz", **{"x/0": np.zeros((1, 1, 8, 4), np.float32)})
    with pytest.raises(DataError, match="one feed per file"):
        Dataset.from_folder(tmp_path, model.info)


def test_separate_sources_and_reuse(model) -> None:
    cal = Dataset.from_feeds(model.info, line_feeds([5, 6, 7]), source="cal")
    ev = Dataset.from_feeds(
        model.info, line_feeds([8, 9], seed=1), [np.array([1]), np.array([0])], source="ev"
    )
    ds = Dataset.separate(cal, ev)
    assert len(ds.calibration) == 3 and len(ds.evaluation) == 2  # every calibration feed calibrates
    assert [ds.samples[i]["x"].shape[3] for i in ds.evaluation] == [8, 9]
    assert list(ds.eval_labels) == [1, 0]
    only = cal.reused("calibration")
    assert only.calibration == only.evaluation == (0, 1, 2)
    assert "also serve for evaluation" in only.split


def test_random_data_is_marked(model) -> None:
    ds = Dataset.random(model.info, n=4, dims={"width": 6})
    assert ds.generated and "random inputs" in ds.summary().warning


# -- engine on feeds of different shapes -------------------------------------------------


def _float_acts(proto: onnx.ModelProto, names: list[str], feeds) -> dict[str, list[np.ndarray]]:
    """Intermediate values from an unmodified model, by plain ONNX Runtime."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for f in feeds:
        for n, v in zip(names, sess.run(names, f), strict=True):
            out[n].append(v.astype(np.float64))
    return out


@pytest.fixture(scope="module")
def multi_shape_engine():
    proto = ocr_line()
    model = from_proto(proto)
    ds = Dataset.from_feeds(model.info, line_feeds(WIDTHS, seed=5))
    return proto, Engine(model, ds, device="cpu")


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse", "entropy"])
@pytest.mark.parametrize("fmt", ["uint8 asym", "uint8 asym ch", "int8 sym", "int8 sym ch"])
def test_calibration_on_feeds_of_different_widths(multi_shape_engine, method, fmt) -> None:
    proto, engine = multi_shape_engine
    for _ in engine.calibrate(method):
        pass
    cal_feeds = [engine.data.samples[i] for i in engine.data.calibration]
    ref = _float_acts(proto, ["t"], cal_feeds)["t"]
    layer = engine.info.layer("classify")
    bound = engine.bind_activation(
        layer, "t", Plan.uniform(engine.info, None, fmt)["classify"].activation
    )
    lo, hi = engine.activation_range("t", bound)
    flat = np.concatenate([r.ravel() for r in ref])
    chans = np.concatenate([r.reshape(-1, 4) for r in ref])  # channels on the last axis
    if method == "minmax":
        if bound.axis is None:
            assert (lo, hi) == pytest.approx((flat.min(), flat.max()))
        else:
            assert np.allclose(np.ravel(lo), chans.min(0)) and np.allclose(
                np.ravel(hi), chans.max(0)
            )
    elif method == "percentile" and bound.axis is None:
        if "sym" in fmt and "asym" not in fmt:
            a = np.percentile(np.abs(flat), 99.99)
            assert (lo, hi) == pytest.approx((-a, a))
        else:
            assert (lo, hi) == pytest.approx(
                (np.percentile(flat, 0.01), np.percentile(flat, 99.99))
            )
    else:  # clipped ranges reach no further than the observed magnitudes
        amax = np.abs(flat).max() if bound.axis is None else np.abs(chans).max(0)
        reach = np.maximum(np.abs(np.ravel(lo)), np.abs(np.ravel(hi)))
        assert np.all(np.isfinite(reach)) and np.all(reach <= amax + 1e-9)


@pytest.mark.parametrize("act", ["uint8 asym", "uint8 asym ch"])
def test_evaluation_on_feeds_of_different_widths_matches_ort_qdq(multi_shape_engine, act) -> None:
    proto, engine = multi_shape_engine
    for _ in engine.calibrate("minmax"):
        pass
    plan = Plan.uniform(engine.info, "int8 sym ch", act)
    ev = engine.evaluate(plan)
    feeds = [engine.data.samples[i] for i in engine.data.evaluation]
    want = plain_run(rewritten(engine, plan), feeds)  # ORT's QuantizeLinear/DequantizeLinear
    got = engine.run_outputs(plan)["y"]
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        assert np.allclose(g, w, atol=1e-5)
    ref = np.concatenate([r.ravel() for r in _float_acts(proto, ["y"], feeds)["y"]])
    q = np.concatenate([g.astype(np.float64).ravel() for g in got])
    sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - q) ** 2))
    assert ev.outputs["y"].error.sqnr_db == pytest.approx(sqnr, abs=1e-3)
    assert ev.layers["classify"].accumulated is not None


def test_load_path_reads_the_kind_and_passes_the_fraction(tmp_path) -> None:
    from PIL import Image

    from bitlens.core.data import load_path
    from tests.core.engine_models import small_cnn

    info = from_proto(small_cnn()).info
    for i in range(4):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / f"im{i}.png")
    ds = load_path(tmp_path, info, calibration_fraction=0.75)
    assert "the first 3 of 4 samples calibrate" in ds.split
    with pytest.raises(DataError, match="no such data file or folder"):
        load_path(tmp_path / "none", info)
