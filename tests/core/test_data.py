"""Input data: sources, batching, the calibration/evaluation split and clear errors."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from PIL import Image

from bitlens.core.data import Dataset
from bitlens.core.datafiles import read_wav, resample
from bitlens.core.errors import DataError
from bitlens.core.model.loader import from_proto
from tests.core.engine_models import small_cnn, two_input_stateful


@pytest.fixture(scope="module")
def cnn_info():
    return from_proto(small_cnn()).info


@pytest.fixture(scope="module")
def state_info():
    return from_proto(two_input_stateful()).info


def test_random_data_split_never_shares_a_feed(cnn_info) -> None:
    ds = Dataset.random(cnn_info, n=8)
    assert set(ds.calibration).isdisjoint(ds.evaluation)
    rows = sum(ds.samples[i]["x"].shape[0] for i in (*ds.calibration, *ds.evaluation))
    assert rows == 8
    assert ds.samples[0]["x"].shape[1:] == (3, 8, 8) and ds.samples[0]["x"].dtype == np.float32


def test_npz_keyed_by_input_with_labels(tmp_path, state_info) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(6, 8)), h=rng.normal(size=(6, 16)), labels=np.arange(6))
    ds = Dataset.from_npz(path, state_info)
    assert ds.samples[0]["x"].dtype == np.float32  # float64 in the file, converted
    assert list(ds.eval_labels) == [3, 4, 5]


def test_missing_or_unknown_inputs_are_named(tmp_path, state_info) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 8), np.float32))
    with pytest.raises(DataError, match="'h'"):
        Dataset.from_npz(path, state_info)
    np.savez(path, x=np.zeros((2, 8)), h=np.zeros((2, 16)), z=np.zeros(2))
    with pytest.raises(DataError, match="'z' is not a model input"):
        Dataset.from_npz(path, state_info)


def test_wrong_shape_and_dtype_name_input_expected_and_given(cnn_info) -> None:
    with pytest.raises(DataError, match=r"'x' expects shape \[N, 3, 8, 8\], given \[2, 3, 9, 9\]"):
        Dataset.from_arrays(cnn_info, {"x": np.zeros((2, 3, 9, 9), np.float32)})
    with pytest.raises(DataError, match="rank 2 instead of 4"):
        Dataset.from_arrays(cnn_info, {"x": np.zeros((2, 3), np.float32)})
    with pytest.raises(DataError, match="expects float32, given int64"):
        Dataset.from_arrays(cnn_info, {"x": np.zeros((2, 3, 8, 8), np.int64)})


def test_not_an_npz(tmp_path, cnn_info) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_text("hello")
    with pytest.raises(DataError, match=r"bad\.npz"):
        Dataset.from_npz(bad, cnn_info)
    with pytest.raises(DataError, match="no such data file"):
        Dataset.from_npz(tmp_path / "none.npz", cnn_info)


def test_image_folder_resized_and_normalized(tmp_path, cnn_info) -> None:
    for i in range(4):
        Image.new("RGB", (20, 10), (i * 60, 0, 255)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    ds = Dataset.from_images(tmp_path, cnn_info, mean=0.5, std=0.5)
    x = np.concatenate([ds.samples[i]["x"] for i in range(len(ds.samples))])
    assert x.shape == (4, 3, 8, 8)
    assert np.allclose(x[:, 2], 1.0) and np.allclose(x[0, 0], -1.0)


def test_image_folder_for_an_nhwc_input_is_read_as_nhwc(tmp_path) -> None:
    """A Keras export's ``[N, 48, 48, 3]`` input (MTCNN's ONet): ``--data images/`` said
    "input has 48 channels; images give 1, 3 or 4", and the command line has no layout
    option. The layout now comes from the input's shape; an explicit one still wins."""
    from bitlens.core.model.loader import from_proto
    from tests.builders import nhwc_conv

    info = from_proto(nhwc_conv()).info  # x: [1, 8, 8, 3]
    for i in range(2):
        Image.new("RGB", (8, 8), (i * 100, 50, 200)).save(tmp_path / f"{i}.png")
    ds = Dataset.from_images(tmp_path, info)
    x = ds.samples[0]["x"]
    assert x.shape == (1, 8, 8, 3)
    np.testing.assert_allclose(x[0, 3, 5], np.array([0, 50, 200], np.float64) / 255, rtol=1e-6)
    with pytest.raises(DataError, match="has 8 channels"):
        Dataset.from_images(tmp_path, info, layout="NCHW")


def test_image_folder_errors(tmp_path, cnn_info) -> None:
    with pytest.raises(DataError, match="no images"):
        Dataset.from_images(tmp_path, cnn_info)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png"):
        Dataset.from_images(tmp_path, cnn_info)


def _write_wav(path, audio: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def test_wav_resampling_keeps_the_tone(tmp_path) -> None:
    rate = 8000
    t = np.arange(rate) / rate
    _write_wav(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), rate)
    audio, r = read_wav(tmp_path / "a.wav")
    assert r == rate and abs(np.abs(audio).max() - 0.5) < 1e-3
    up = resample(audio, rate, 16000)
    assert len(up) == 16000
    peak = np.argmax(np.abs(np.fft.rfft(up)))
    assert abs(peak * 16000 / len(up) - 440) < 2


def test_wav_not_readable(tmp_path, cnn_info) -> None:
    (tmp_path / "x.wav").write_bytes(b"RIFF....nope")
    with pytest.raises(DataError, match=r"x\.wav"):
        Dataset.from_wav(tmp_path / "x.wav", cnn_info, frame=16)
