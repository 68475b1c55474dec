"""Data files (.npz, .npy, WAV, PNG), plans and ORT overrides, mutated for the fuzzer."""

from __future__ import annotations

import io
import json
import random
import re
import struct
import wave
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tests.fuzz import DATA_KINDS, SAMPLES, Case
from tests.fuzz.models import _mut_bytes


# -- data and plan mutations ---------------------------------------------------------------------
def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _mut_npy_header(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    end = data.index(b"\n") + 1
    header = data[:end].decode("latin1")
    choice = rng.randrange(4)
    if choice == 0:
        new = re.sub(r"\(.*?\)", rng.choice(["(99999, 999999, 2)", "(-1, 16)", "()", "(10**9,)",
                                               "(2**62, 2)", "(3,"]), header, count=1)  # fmt: skip
        what = "npy shape"
    elif choice == 1:
        new = header.replace(
            "'<f4'", rng.choice(["'|O'", "'<f16'", "'V100000000'", "'<U9'", "'x'"])
        )
        what = "npy dtype"
    elif choice == 2:
        new = header.replace("False", "True")
        what = "npy fortran"
    else:
        new = header[: rng.randrange(len(header))]
        what = "npy header cut"
        return new.encode("latin1") + data[end:], what
    # Keep the header's declared length (padding with spaces, as numpy does) so the
    # change itself, not a shifted data offset, is what the reader meets.
    body = new.rstrip("\n")
    if len(body) < len(header) - 1:
        body = body + " " * (len(header) - 1 - len(body))
    return (body + "\n").encode("latin1") + data[end:], what


def _npz(arrays: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in arrays.items():
            zf.writestr(k + ".npy", v)
    return buf.getvalue()


def _wav(rate: int = 16000, frames: int = 640) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(np.arange(frames) / 5) * 8000).astype("<i2").tobytes())
    return buf.getvalue()


def _png(w: int = 16, h: int = 16) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (w, h), 128).save(buf, "PNG")
    return buf.getvalue()


def _plan_seed() -> tuple[dict, dict]:
    from bitlens.core.model.loader import from_proto
    from bitlens.core.plan import Plan
    from tests.builders import mlp

    info = from_proto(mlp()).info
    plan = Plan.preset(info, "W8A8")
    return plan.to_dict(), plan.to_ort_overrides()


def _mut_json(obj: object, rng: random.Random) -> tuple[bytes, str]:
    choice = rng.randrange(9)
    if choice == 0:
        return b"[" * 100_000 + b"]" * 100_000, "deep nesting"
    if choice == 1:
        return json.dumps(obj).encode().replace(b"1", b"9" * 5000, 1), "huge integer"
    if choice == 2:
        return b"\xff\xfe" + json.dumps(obj).encode("utf-16-le"), "not UTF-8"
    if choice == 3:
        raw = json.dumps(obj).encode()
        return raw[: rng.randrange(len(raw))], "truncated"
    values = [True, False, None, "no", "abc", -1, 10**20, 1.5, [], {}, "blk99999999999999999999",
              "int4 sym blk99999999999999999999", "int8 sym", "QInt8", float("nan")]  # fmt: skip

    def walk(o: object, depth: int = 0) -> object:
        if isinstance(o, dict):
            out = {}
            for k, v in o.items():
                r = rng.random()
                if r < 0.15:
                    continue  # key dropped
                out[k if rng.random() > 0.05 else k + "x"] = (
                    rng.choice(values) if r < 0.35 else walk(v, depth + 1)
                )
            if rng.random() < 0.1:
                out[rng.choice(["axis", "dynamic", "weight", "symmetric", "quant_type", "zz"])] = (
                    rng.choice(values)
                )
            return out
        if isinstance(o, list):
            return [walk(v, depth + 1) for v in o] if rng.random() > 0.1 else rng.choice(values)
        return rng.choice(values) if rng.random() < 0.3 else o

    return json.dumps(walk(obj)).encode(), "structure"


def data_cases(n: int, seed: int, scratch: Path) -> Iterator[Case]:
    rng = random.Random(seed + 1)
    x = np.random.default_rng(0).standard_normal((6, 16)).astype(np.float32)
    good_npz = _npz({"x": _npy(x), "labels": _npy(np.arange(3))})
    good_npy = _npy(x)
    digits = SAMPLES / "digits_cnn" / "data.npz"
    digits_npz = digits.read_bytes() if digits.is_file() else good_npz
    wav = _wav()
    png = _png()
    plan, overrides = _plan_seed()
    for i in range(n):
        folder = scratch / f"d{i // 500}" / f"c{i}"
        folder.mkdir(parents=True, exist_ok=True)
        kind = DATA_KINDS[i % len(DATA_KINDS)]
        model = "mlp"
        if kind in ("npz", "npy"):
            base = "npz" if kind == "npz" else "npy"
            data = good_npz if kind == "npz" else good_npy
            if kind == "npz" and rng.random() < 0.3:
                data, base, model = digits_npz, "digits npz", "digits_cnn"
            r = rng.random()
            if r < 0.35:
                data, what = _mut_bytes(data, rng)
            elif kind == "npy":
                data, what = _mut_npy_header(data, rng)
            else:
                inner, what = _mut_npy_header(good_npy, rng)
                key = rng.choice(["x", "labels", "nope"])
                # mlp's x has a fixed batch of 2: 6 rows are 3 samples, so 3 labels fit
                labels = rng.choice([np.arange(3), np.arange(3), np.array(3), np.zeros((3, 2))])
                extra = {"labels": _npy(labels)}
                data = _npz({key: inner, **({} if key == "labels" else extra)})
                what = f"npz member {key}: {what}"
            path = folder / f"data.{kind}"
            path.write_bytes(data)
        elif kind == "wav":
            base, model = "wav", "audio"
            data = bytearray(wav)
            r = rng.randrange(4)
            if r == 0:
                struct.pack_into("<I", data, 24, rng.choice([0, 1, 7, 999, 2**31, 2**32 - 1]))
                what = "wav rate"
            elif r == 1:
                struct.pack_into("<H", data, 22, rng.choice([0, 3, 255, 65535]))
                what = "wav channels"
            elif r == 2:
                struct.pack_into("<H", data, 34, rng.choice([0, 1, 24, 64, 65535]))
                what = "wav bits"
            else:
                data, what = bytearray(_mut_bytes(bytes(data), rng)[0]), "wav bytes"
            path = folder / "a.wav"
            path.write_bytes(bytes(data))
        elif kind == "image":
            base, model = "png", "digits_cnn"
            data = bytearray(png)
            if rng.random() < 0.5:
                struct.pack_into(">II", data, 16, rng.choice([0, 1, 50000, 2**31 - 1]),
                                 rng.choice([0, 1, 50000, 2**31 - 1]))  # fmt: skip
                struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
                what = "png size"
            else:
                data, what = bytearray(_mut_bytes(bytes(data), rng)[0]), "png bytes"
            (folder / "img.png").write_bytes(bytes(data))
            path = folder
        else:
            base = kind
            data, what = _mut_json(plan if kind == "plan" else overrides, rng)
            path = folder / f"{kind}.json"
            path.write_bytes(data)
        yield Case(kind, str(path), base, what, model)
