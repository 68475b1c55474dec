"""Reading data files safely: ``.npy``/``.npz`` arrays, WAV audio, images.

Every reader opens regular files only, compares what a file declares (an
array header's shape, a zip member's size, a WAV's rate, an image's
pixels) with what the file holds and with the memory budget
(:mod:`bitlens.core.limits`) before it allocates, and turns every way a
file can be broken (truncated, bit-flipped, empty, a pickle, a
decompression bomb) into one :class:`DataError` line naming the file. No
reader ever unpickles.
"""

from __future__ import annotations

import os
import struct
import wave
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from bitlens.core.errors import DataError
from bitlens.core.fileio import stat_regular
from bitlens.core.limits import check_budget, fmt_bytes, memory_budget

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
# Audio rates outside this range are not audio a model was trained on; rate 0 or 1 in a
# header is corruption (and 1 Hz resampled to 16 kHz would ask for 16000x the memory).
MIN_RATE, MAX_RATE = 1000, 768_000


def check_regular(path: str | Path, what: str = "data file") -> os.stat_result:
    """stat() of a regular file, or DataError (missing, a folder, a FIFO or device)."""
    p = Path(path)
    st = stat_regular(p, DataError, what)
    check_budget(st.st_size, f"{p.name} ({st.st_size} bytes)", DataError)
    return st


# -- arrays ---------------------------------------------------------------------------------------
def read_arrays(path: str | Path) -> np.ndarray | dict[str, np.ndarray]:
    """An ``.npy`` file's array, or an ``.npz`` file's arrays by key (told apart by content)."""
    p = Path(path)
    st = check_regular(p)
    if st.st_size == 0:
        raise DataError(f"{p.name}: the file is empty")
    with open(p, "rb") as fh:
        head = fh.read(len(NPY_MAGIC))
    if head.startswith(NPY_MAGIC):
        return read_npy(p)
    if head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
        return read_npz(p)
    raise DataError(f"{p.name}: not a .npy or .npz file (no NumPy or zip signature)")


def read_npy(path: str | Path) -> np.ndarray:
    p = Path(path)
    st = check_regular(p)
    try:
        with open(p, "rb") as fh:
            return _read_npy_stream(fh, st.st_size, p.name)
    except OSError as exc:
        raise DataError(f"{p.name}: cannot be read ({exc.strerror or exc})") from None


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    p = Path(path)
    check_regular(p)
    budget = memory_budget()
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(p) as zf:
            members = zf.infolist()
            declared = sum(m.file_size for m in members)
            if declared > budget:
                raise DataError(
                    f"{p.name}: its arrays declare {fmt_bytes(declared)} ({declared} bytes), "
                    f"over the memory budget of {fmt_bytes(budget)}"
                )
            for m in members:
                if m.is_dir():
                    continue
                key = m.filename.removesuffix(".npy")
                with zf.open(m) as fh:
                    out[key] = _read_npy_stream(fh, m.file_size, f"{p.name}[{key}]")
    except DataError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
            ValueError, NotImplementedError, RuntimeError, struct.error) as exc:  # fmt: skip
        raise DataError(f"{p.name}: not a readable .npz file ({_one_line(exc)})") from None
    if not out:
        raise DataError(f"{p.name}: the .npz file holds no arrays")
    return out


def _read_npy_stream(fh: IO[bytes], size: int, name: str) -> np.ndarray:
    """Parse the header, check the declared shape against ``size`` and the budget, then read."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh, max_header_size=10_000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh, max_header_size=10_000)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except (zipfile.BadZipFile, zlib.error, OSError):
        raise
    except Exception as exc:
        # whose errors on hostile text are many and unlisted (ValueError, SyntaxError,
        # tokenize.TokenError, ...): any of them means "not an array header".
        raise DataError(f"{name}: not a readable .npy array ({_one_line(exc)})") from None
    if dtype.hasobject:
        raise DataError(f"{name}: holds Python objects (a pickle), which Bitlens never loads")
    if any(int(d) < 0 for d in shape):
        raise DataError(f"{name}: negative dimension in shape {list(shape)}")
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dtype.itemsize
    check_budget(nbytes, f"{name} of shape {list(shape)} ({dtype})", DataError)
    offset = fh.tell()
    if offset + nbytes > size:
        raise DataError(
            f"{name}: shape {list(shape)} ({dtype}) needs {nbytes} bytes, the file holds "
            f"{max(size - offset, 0)} (truncated?)"
        )
    try:
        raw = fh.read(nbytes)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{name}: damaged data ({_one_line(exc)})") from None
    if len(raw) != nbytes:
        raise DataError(f"{name}: the data end after {len(raw)} of {nbytes} bytes (truncated?)")
    arr = np.frombuffer(raw, dtype=dtype, count=count)
    order = "F" if fortran else "C"
    return arr.reshape(shape, order=order).copy()  # writable and owning its memory


def check_labels(labels: Any, n: int | None, source: str) -> np.ndarray:
    """Labels are an array with one entry (or row) per sample: never a 0-d scalar."""
    a = np.asarray(labels)
    if a.ndim == 0:
        raise DataError(
            f"{source}: labels must be an array with one entry per sample, got a scalar"
        )
    if n is not None and len(a) != n:
        raise DataError(f"{source}: {len(a)} labels for {n} samples")
    return a


# -- audio ----------------------------------------------------------------------------------------
def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate (PCM 8/16/32-bit)."""
    p = Path(path)
    st = check_regular(p, "WAV file")
    try:
        with wave.open(str(p), "rb") as w:
            n_ch, width, rate, n = (
                w.getnchannels(),
                w.getsampwidth(),
                w.getframerate(),
                w.getnframes(),
            )
            if n_ch < 1 or width < 1:
                raise DataError(f"{p.name}: WAV header declares {n_ch} channels of {width} bytes")
            if not MIN_RATE <= rate <= MAX_RATE:
                raise DataError(
                    f"{p.name}: sample rate {rate} Hz in the WAV header is not an audio rate "
                    f"({MIN_RATE} to {MAX_RATE} Hz); the file is damaged"
                )
            n = min(n, st.st_size // (n_ch * width))  # a header may claim more than the file has
            raw = w.readframes(n)
    except DataError:
        raise
    except (wave.Error, EOFError, OSError, ValueError, struct.error, ZeroDivisionError,
            RuntimeError) as exc:  # fmt: skip
        # RuntimeError: the wave module's chunk reader raises a bare one when a chunk
        # declares more bytes than the file holds (Lib/wave.py, _Chunk.seek).
        raise DataError(f"{p.name}: not a readable WAV file ({_one_line(exc)})") from None
    raw = raw[: len(raw) // (n_ch * width) * (n_ch * width)]
    if width == 1:
        a = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        a = np.frombuffer(raw, "<i2").astype(np.float32) / 32768
    elif width == 4:
        a = np.frombuffer(raw, "<i4").astype(np.float32) / 2**31
    else:
        raise DataError(f"{p.name}: {8 * width}-bit WAV is not supported (8, 16 or 32-bit PCM)")
    return a.reshape(-1, n_ch).mean(axis=1), rate


def resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling by FFT (zero-padding or truncating the spectrum)."""
    if not (MIN_RATE <= target <= MAX_RATE):
        raise DataError(f"target sample rate {target} Hz is outside {MIN_RATE} to {MAX_RATE} Hz")
    if rate <= 0:
        raise DataError(f"sample rate {rate} Hz is not a rate")
    if rate == target or len(audio) == 0:
        return audio.astype(np.float32)
    n_out = round(len(audio) * target / rate)
    check_budget(n_out * 16, f"audio resampled from {rate} to {target} Hz", DataError)
    spec = np.fft.rfft(audio.astype(np.float64))
    k = n_out // 2 + 1
    s2 = np.zeros(k, complex)
    m = min(k, len(spec))
    s2[:m] = spec[:m]
    out = np.fft.irfft(s2, n_out) * (n_out / len(audio))
    return out.astype(np.float32)


# -- images ---------------------------------------------------------------------------------------
def read_image(path: str | Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """An image converted to ``mode`` ("L", "RGB", "RGBA") and resized to (height, width), float32 HxWxC."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    check_regular(p, "image")
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    h, w = size
    if h < 1 or w < 1:
        raise DataError(f"image size {h}x{w} is not a size")
    check_budget(h * w * channels * 4, f"images resized to {h}x{w}", DataError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                pixels = im.size[0] * im.size[1]
                # Decoding needs about 4 bytes per pixel and channel band (RGBA worst case).
                check_budget(pixels * 4, f"{p.name} ({im.size[0]}x{im.size[1]} pixels)", DataError)
                im = im.convert(mode).resize((w, h), Image.Resampling.BILINEAR)
                return np.asarray(im, dtype=np.float32).reshape(h, w, channels)
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{p.name}: refused as a decompression bomb ({_one_line(exc)})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error,
            zlib.error, IndexError, TypeError, MemoryError) as exc:  # fmt: skip
        raise DataError(f"{p.name}: not a readable image ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[:200]


__all__ = [
    "check_labels", "check_regular", "read_arrays", "read_image", "read_npy", "read_npz",
    "read_wav", "resample",
]  # fmt: skip
