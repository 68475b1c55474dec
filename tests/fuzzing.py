"""A fuzzer for everything Bitlens reads: models, data files, plans and ORT overrides.

Shared by ``tests/core/test_fuzz.py`` (a few hundred cases in CI) and
``benchmarks/fuzz.py`` (10,000+ on demand). Cases are generated here from a
seed, written to a scratch folder, and run one by one in a worker
subprocess (``python -m tests.fuzzing``) that:

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
"""

from __future__ import annotations

import io
import json
import os
import random
import select
import shutil
import struct
import subprocess
import sys
import time
import wave
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
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


# -- seed files --------------------------------------------------------------------------------
def seed_models() -> dict[str, onnx.ModelProto]:
    """Samples and synthetic models covering Constant nodes, If/Loop bodies, sparse tensors."""
    from tests import builders as b

    models: dict[str, onnx.ModelProto] = {
        "mlp": b.mlp(),
        "conv_net": b.conv_net(),
        "constant_weights": b.opset12_constant_weights(),
        "lstm_in_if": b.lstm_in_if(),
        "loop": b.loop_with_matmul(),
        "sparse": _sparse_model(),
        "audio": _audio_model(),
    }
    for name in ("digits_cnn", "speech_kws", "text_transformer"):
        p = SAMPLES / name / "model.onnx"
        if p.is_file():
            models[name] = onnx.load(p)
    return models


def _sparse_model() -> onnx.ModelProto:
    """x[1,6] @ W where W[6,4] is a sparse initializer (linear indices)."""
    values = numpy_helper.from_array(np.arange(1, 6, dtype=np.float32), "W")
    indices = numpy_helper.from_array(np.array([0, 5, 9, 14, 23], np.int64), "W_idx")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "sparse",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        sparse_initializer=[helper.make_sparse_tensor(values, indices, [6, 4])],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _audio_model() -> onnx.ModelProto:
    """Frames x[N, 64] -> MatMul -> y[N, 4], for WAV data."""
    w = numpy_helper.from_array(
        np.random.default_rng(3).standard_normal((64, 4)).astype(np.float32), "w"
    )
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "audio",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [w],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


# -- model mutations ---------------------------------------------------------------------------
def _tensors(m: onnx.ModelProto) -> list[onnx.TensorProto]:
    from bitlens.core.model.validate import walk_tensors

    out: list[onnx.TensorProto] = []
    for _, t in walk_tensors(m):
        if isinstance(t, onnx.SparseTensorProto):
            out += [t.values, t.indices]
        else:
            out.append(t)
    return out


def _sparse(m: onnx.ModelProto) -> list[onnx.SparseTensorProto]:
    from bitlens.core.model.validate import walk_tensors

    return [t for _, t in walk_tensors(m) if isinstance(t, onnx.SparseTensorProto)]


def _nodes(m: onnx.ModelProto) -> list[onnx.NodeProto]:
    from bitlens.core.model.graph import subgraphs

    out: list[onnx.NodeProto] = []
    stack = [m.graph]
    while stack:
        g = stack.pop()
        for n in g.node:
            out.append(n)
            stack.extend(sg for _, sg in subgraphs(n))
    return out


def _mut_tensor_data(m: onnx.ModelProto, rng: random.Random) -> str:
    t = rng.choice(_tensors(m))
    if t.HasField("raw_data"):
        n = len(t.raw_data)
        choice = rng.randrange(4)
        if choice == 0:
            t.raw_data = b""
        elif choice == 1:
            t.raw_data = t.raw_data[: rng.randrange(max(n, 1))]
        elif choice == 2:
            t.raw_data = t.raw_data + b"\0" * rng.randint(1, 7)
        else:
            t.raw_data = t.raw_data[: max(n - 1, 0)]
        return "raw_data length"
    for fname in ("float_data", "int32_data", "int64_data", "double_data", "string_data"):
        f = getattr(t, fname)
        if len(f):
            del f[rng.randrange(len(f)) :]
            return f"{fname} shortened"
    t.dims.append(rng.choice([2, 3, 1000]))
    return "dims grown"


def _mut_tensor_dims(m: onnx.ModelProto, rng: random.Random) -> str:
    t = rng.choice(_tensors(m))
    big = rng.choice([0, 1, 2, 7, 100000, 2**31, 2**40, 2**62])
    if t.dims and rng.random() < 0.7:
        t.dims[rng.randrange(len(t.dims))] = big
    else:
        t.dims.append(big)
    return "tensor dims"


def _mut_tensor_type(m: onnx.ModelProto, rng: random.Random) -> str:
    t = rng.choice(_tensors(m))
    t.data_type = rng.choice([0, 2, 3, 5, 6, 7, 8, 9, 10, 11, 16, 17, 21, 22, 23, 25, 26, 40, 99])
    return "tensor data_type"


def _mut_sparse(m: onnx.ModelProto, rng: random.Random) -> str:
    sp = _sparse(m)
    if not sp:
        values = numpy_helper.from_array(np.ones(1, np.float32), "S")
        idx = numpy_helper.from_array(np.zeros(1, np.int64), "S_idx")
        m.graph.sparse_initializer.append(helper.make_sparse_tensor(values, idx, [2, 2]))
        sp = _sparse(m)
    s = rng.choice(sp)
    choice = rng.randrange(4)
    if choice == 0:
        del s.dims[:]
        s.dims.extend([100000, 100000])
        return "sparse dims bomb"
    if choice == 1:
        i = numpy_helper.to_array(s.indices).copy()
        if i.size:
            i.flat[rng.randrange(i.size)] = rng.choice([-1, 10**6, 2**62])
        s.indices.CopyFrom(numpy_helper.from_array(i, s.indices.name))
        return "sparse index out of range"
    if choice == 2:
        s.indices.data_type = TensorProto.INT32
        return "sparse index type"
    s.values.dims[0] = s.values.dims[0] + rng.randint(1, 5) if s.values.dims else 3
    return "sparse values count"


def _mut_constant_node(m: onnx.ModelProto, rng: random.Random) -> str:
    consts = [n for n in _nodes(m) if n.op_type == "Constant"]
    if not consts:
        return _mut_tensor_data(m, rng)
    n = rng.choice(consts)
    choice = rng.randrange(4)
    if choice == 0:
        del n.attribute[:]
        return "constant without value"
    if choice == 1:
        a = n.attribute[0]
        if a.HasField("t"):
            a.t.raw_data = a.t.raw_data[:1]
            return "constant raw_data cut"
    if choice == 2:
        n.attribute.add().CopyFrom(helper.make_attribute("value_float", 1.0))
        return "constant with two values"
    n.attribute[0].type = rng.choice([1, 2, 3, 4, 5, 6, 7, 11])
    return "constant attribute type"


def _mut_external(m: onnx.ModelProto, rng: random.Random, folder: Path) -> str:
    t = rng.choice(list(m.graph.initializer) or _tensors(m))
    raw = t.raw_data if t.HasField("raw_data") else numpy_helper.to_array(t).tobytes()
    (folder / "w.bin").write_bytes(raw)
    t.ClearField("raw_data")
    for f in ("float_data", "int32_data", "int64_data", "double_data"):
        t.ClearField(f)
    t.data_location = TensorProto.EXTERNAL
    loc = rng.choice(["w.bin", "w.bin", "../w.bin", "/etc/passwd", "a\x00b", "x" * 5000,
                      "missing.bin", ".", "sub/../w.bin", "C:\\w.bin"])  # fmt: skip
    entries = {"location": loc}
    r = rng.randrange(5)
    if r == 0:
        entries["length"] = str(rng.choice([0, 1, len(raw) - 1, len(raw) + 1, 10**12]))
    elif r == 1:
        entries["offset"] = str(rng.choice([-1, 1, len(raw), 10**12]))
    elif r == 2:
        entries["length"] = "abc"
    elif r == 3:
        with open(folder / "w.bin", "r+b") as fh:  # a huge sparse file next to a tiny model
            fh.truncate(6_000_000_000)
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return f"external data ({loc[:12]!r}, {sorted(entries)})"


def _mut_value_info(m: onnx.ModelProto, rng: random.Random) -> str:
    vis = list(m.graph.input) + list(m.graph.output)
    vi = rng.choice(vis)
    choice = rng.randrange(3)
    if choice == 0:
        vi.type.tensor_type.elem_type = rng.choice([0, 40, 99, 8, 23])
        return "io element type"
    if choice == 1:
        dims = vi.type.tensor_type.shape.dim
        if dims:
            d = dims[rng.randrange(len(dims))]
            if rng.random() < 0.5:
                d.dim_value = rng.choice([0, -1, 2**40])
            else:
                d.dim_param = rng.choice(["", "N", "?", "\u00e9"])
        return "io dims"
    vi.ClearField("type")
    return "io type removed"


def _mut_graph(m: onnx.ModelProto, rng: random.Random) -> str:
    nodes = _nodes(m)
    n = rng.choice(nodes)
    choice = rng.randrange(7)
    if choice == 0 and n.input:
        n.input[rng.randrange(len(n.input))] = "dangling"
        return "dangling input"
    if choice == 1:
        m.graph.node.reverse()
        return "nodes reversed"
    if choice == 2 and len(m.graph.node) > 1:
        m.graph.node[0].input.append(m.graph.node[-1].output[0])
        return "cycle"
    if choice == 3:
        n.op_type = rng.choice(["", "Conv", "Gemm", "MatMul", "LSTM", "Nope", "If"])
        return "op_type changed"
    if choice == 4:
        del m.opset_import[:]
        m.opset_import.append(helper.make_opsetid("", rng.choice([1, 7, 12, 99, 10**6])))
        return "opset changed"
    if choice == 5 and n.attribute:
        a = n.attribute[rng.randrange(len(n.attribute))]
        a.type = rng.choice(list(onnx.AttributeProto.AttributeType.values()))
        return "attribute type"
    if n.output:
        n.output[0] = m.graph.node[0].output[0] if m.graph.node[0].output else "y"
        return "duplicate output"
    return "no-op"


def _mut_strings(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Replace one printable run (a name, producer) by invalid UTF-8 of the same length."""
    import re

    runs = [mt for mt in re.finditer(rb"[A-Za-z_][A-Za-z0-9_.]{2,}", data)]
    if not runs:
        return data, "no strings"
    mt = rng.choice(runs)
    bad = bytes(rng.choice([0xFF, 0xFE, 0xC0, 0x80]) for _ in range(len(mt.group())))
    return data[: mt.start()] + bad + data[mt.end() :], "invalid UTF-8 name"


def _mut_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    choice = rng.randrange(5)
    if choice == 0:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        return bytes(b), "bit flips"
    if choice == 1:
        return bytes(b[: rng.randrange(len(b))]), "truncated"
    if choice == 2:
        i = rng.randrange(len(b))
        return bytes(b[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + b[i:]), "bytes inserted"
    if choice == 3:
        i = rng.randrange(len(b))
        b[i : i + 4] = b"\xff\xff\xff\x7f"
        return bytes(b), "varint overwritten"
    return b"", "empty"


def _deep_model(depth: int) -> bytes:
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "leaf",
                          [vi("x", 1, [1])], [vi("y", 1, [1])]).SerializeToString()  # fmt: skip
    for _ in range(depth):
        attr = onnx.AttributeProto(name="then_branch", type=onnx.AttributeProto.GRAPH)
        node = helper.make_node("If", ["c"], ["y"]).SerializeToString()
        node += _ld(5, attr.SerializeToString() + _ld(6, g))
        g = helper.make_graph([], "g", [vi("c", 9, [])], [vi("y", 1, [1])]).SerializeToString()
        g += _ld(1, node)
    head = onnx.ModelProto(ir_version=8)
    head.opset_import.append(helper.make_opsetid("", 17))
    return head.SerializeToString() + _ld(7, g)


def _ld(number: int, payload: bytes) -> bytes:
    out, n = bytearray([number << 3 | 2]), len(payload)
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out) + bytes([n]) + payload


PROTO_MUTATIONS: tuple[Callable[[onnx.ModelProto, random.Random], str], ...] = (
    _mut_tensor_data, _mut_tensor_data, _mut_tensor_dims, _mut_tensor_type, _mut_sparse,
    _mut_constant_node, _mut_value_info, _mut_graph, _mut_graph,
)  # fmt: skip


def model_cases(n: int, seed: int, scratch: Path, engine: bool = False) -> Iterator[Case]:
    rng = random.Random(seed)
    models = seed_models()
    names = sorted(models)
    blobs = {k: v.SerializeToString() for k, v in models.items()}
    for i in range(n):
        folder = scratch / f"m{i // 500}" / f"c{i}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.choice(names)
        r = rng.random()
        if r < 0.3:
            data, what = _mut_bytes(blobs[base], rng)
        elif r < 0.38:
            data, what = _mut_strings(blobs[base], rng)
        elif r < 0.40:
            depth = rng.choice([5, 31, 32, 40, 200])
            data, what, base = _deep_model(depth), f"nesting {depth}", "deep"
        else:
            m = onnx.ModelProto()
            m.CopyFrom(models[base])
            if rng.random() < 0.12:
                what = _mut_external(m, rng, folder)
            else:
                muts = []
                for _ in range(rng.choice([1, 1, 2, 3])):
                    mutate = rng.choice(PROTO_MUTATIONS)
                    try:
                        muts.append(mutate(m, rng))
                    except Exception as exc:
                        muts.append(f"{mutate.__name__} skipped ({type(exc).__name__})")
                what = " + ".join(muts)
            data = m.SerializeToString()
        path = folder / "model.onnx"
        path.write_bytes(data)
        yield Case("model", str(path), base, what, engine=engine)


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
        import re

        new = re.sub(r"\(.*?\)", rng.choice(["(99999, 999999, 2)", "(-1, 16)", "()", "(10**9,)",
                                               "(2**62, 2)", "(3,"]), header, count=1)  # fmt: skip
        what = "npy shape"
    elif choice == 1:
        new = header.replace("'<f4'", rng.choice(["'|O'", "'<f16'", "'V100000000'", "'<U9'", "'x'"]))
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
                out[rng.choice(["axis", "dynamic", "weight", "symmetric", "quant_type", "zz"])] = rng.choice(values)
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


# -- the worker ------------------------------------------------------------------------------------
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

    print(json.dumps({"ready": True}), flush=True)
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
        print(json.dumps({"outcome": outcome, "message": message,
                          "seconds": time.perf_counter() - t0}), flush=True)  # fmt: skip
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


# -- the runner ------------------------------------------------------------------------------------
class Runner:
    """Feeds cases to a worker subprocess, restarting it after a hang or a death."""

    def __init__(self, timeout: float = 10.0, budget: str = "512M", start_timeout: float = 120.0):
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.env = {
            **os.environ,
            "BITLENS_MEMORY_BUDGET": budget,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "app"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzzing"], cwd=ROOT, env=self.env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        line = self._read(proc, self.start_timeout)
        if line is None or not json.loads(line).get("ready"):
            proc.kill()
            raise RuntimeError("the fuzz worker did not start")
        return proc

    @staticmethod
    def _read(proc: subprocess.Popen[str], timeout: float) -> str | None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = proc.stdout.readline()
        return line or None

    def run(self, case: Case) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None
        t0 = time.perf_counter()
        try:
            proc.stdin.write(json.dumps(case.__dict__) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self.proc = None
            return Result(case, "died", "worker gone before the case")
        line = self._read(proc, self.timeout)
        if line is None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                self.proc = None
                return Result(case, "hang", f"no answer in {self.timeout:.0f} s")
            self.proc = None
            code = proc.returncode
            kind = "memory" if code in (-9,) else "died"
            return Result(case, kind, f"worker exited with {code}", time.perf_counter() - t0)
        ans = json.loads(line)
        return Result(case, ans["outcome"], ans["message"], ans["seconds"])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def run_cases(cases: Iterator[Case], runner: Runner, on_result: Callable[[Result], None] | None = None) -> Report:
    report = Report()
    for case in cases:
        res = runner.run(case)
        report.results.append(res)
        p = Path(case.path)
        shutil.rmtree(p if p.is_dir() else p.parent, ignore_errors=True)  # keep the scratch small
        if on_result is not None:
            on_result(res)
    return report


if __name__ == "__main__":
    raise SystemExit(_worker_main())
