"""Broken and hostile data files give one DataError line; nothing allocates past the budget."""

from __future__ import annotations

import io
import os
import struct
import wave
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from bitlens.core.data import Dataset
from bitlens.core.datafiles import read_arrays, read_image, read_wav, resample
from bitlens.core.errors import DataError
from bitlens.core.model.loader import from_proto
from tests.builders import mlp


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_npz_header_bomb_is_refused_before_allocating(tmp_path: Path) -> None:
    header = _npy_bytes(np.zeros((2, 2), np.float32)).replace(b"(2, 2)", b"(99999, 999999, 2)")
    p = tmp_path / "bomb.npz"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("x.npy", header[:200])
    assert p.stat().st_size < 1000
    with pytest.raises(DataError) as exc:
        read_arrays(p)
    assert "over the budget" in _one_line(exc) and "[99999, 999999, 2]" in str(exc.value)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "pickle", "text"])
def test_corrupt_array_files(tmp_path: Path, damage: str) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, x=np.arange(4000, dtype=np.float32))
    data = good.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        b = bytearray(data)
        b[len(b) // 2] ^= 0xFF
        data = bytes(b)
    elif damage == "empty":
        data = b""
    elif damage == "pickle":
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        data = buf.getvalue()
    else:
        data = b"x,y\n1,2\n"
    p = tmp_path / "bad.npz"
    p.write_bytes(data)
    with pytest.raises(DataError) as exc:
        read_arrays(p)
    assert "bad.npz" in _one_line(exc)


def test_truncated_npy(tmp_path: Path) -> None:
    p = tmp_path / "t.npy"
    p.write_bytes(_npy_bytes(np.zeros((10, 10), np.float32))[:-7])
    with pytest.raises(DataError, match="needs 400 bytes, the file holds 393"):
        read_arrays(p)


def test_zero_d_labels_and_negative_samples(tmp_path: Path) -> None:
    info = from_proto(mlp()).info
    x = np.zeros((4, *info.inputs[0].shape[1:]), np.float32)  # type: ignore[misc]
    p = tmp_path / "d.npz"
    np.savez(p, **{info.inputs[0].name: x, "labels": np.array(3)})
    with pytest.raises(DataError, match="labels must be an array with one entry per sample"):
        Dataset.from_npz(p, info)
    with pytest.raises(DataError, match="at least 1, not -3"):
        Dataset.random(info, n=-3)


def _wav(path: Path, rate: int, frames: int = 100) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(frames, "<i2").tobytes())
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 24, rate)  # the fmt chunk's sample rate
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("rate", [0, 1])
def test_wav_rate_zero_or_one(tmp_path: Path, rate: int) -> None:
    with pytest.raises(DataError, match=f"sample rate {rate} Hz"):
        read_wav(_wav(tmp_path / "a.wav", rate))


def test_wav_target_rate_checked() -> None:
    with pytest.raises(DataError, match="target sample rate 0 Hz"):
        resample(np.zeros(10, np.float32), 16000, 0)


def test_png_decompression_bomb(tmp_path: Path) -> None:
    from PIL import Image

    p = tmp_path / "bomb.png"
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    # IHDR (after the 8-byte signature, length and type): width and height, then its CRC.
    struct.pack_into(">II", data, 16, 50000, 50000)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    p.write_bytes(bytes(data))  # 2.5 gigapixels declared in under 100 bytes
    with pytest.raises(DataError, match=r"decompression bomb|over the budget"):
        read_image(p, "L", (8, 8))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_data_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "x.npz"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        read_arrays(fifo)


def test_an_input_with_a_zero_dimension_is_a_data_error() -> None:
    m = mlp()
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    with pytest.raises(DataError, match="an empty input cannot be fed"):
        Dataset.random(from_proto(m).info, n=2)


def test_random_data_for_a_huge_input_is_refused_before_allocating() -> None:
    m = mlp()
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2**40
    # x's axis 0 is fixed at 2, so random samples stack along a new axis: [n, 2, 2**40].
    with pytest.raises(
        DataError, match=r"random data for input 'x' of shape \[2, 2, 1099511627776\]"
    ):
        Dataset.random(from_proto(m).info, n=2)


def test_wav_chunk_larger_than_the_file(tmp_path: Path) -> None:
    p = _wav(tmp_path / "a.wav", 16000)
    data = bytearray(p.read_bytes())
    struct.pack_into("<I", data, 16, 0x7FFFFFFF)  # the fmt chunk's size
    p.write_bytes(bytes(data))
    with pytest.raises(DataError, match="not a readable WAV file"):
        read_wav(p)
