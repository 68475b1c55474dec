"""Seed models and their mutations (bytes, tensors, sparse, Constant nodes, graphs, names,
external data, nesting) for the fuzzer; :func:`model_cases` writes each case to disk."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.fuzz import SAMPLES, Case


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
    try:  # weights computed from constants, folded at load (If-nested LSTM, Transpose chain)
        from tests.core.test_folding import nested_if_lstm, opset12_computed_weights

        models["folded_lstm"] = nested_if_lstm()[0]
        models["computed_weights"] = opset12_computed_weights()
    except ImportError:
        pass
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


def _mut_fold_bomb(m: onnx.ModelProto, rng: random.Random) -> str:
    """Pad a Constant by a large amount: a few bytes that fold into gigabytes."""
    consts = [
        n for n in m.graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].HasField("t")
    ]  # fmt: skip
    if not consts:
        return _mut_graph(m, rng)
    n = rng.choice(consts)
    rank = len(n.attribute[0].t.dims)
    out = n.output[0]
    n.output[0] = out + "_unpadded"
    big = rng.choice([1, 100, 100_000])
    pads = numpy_helper.from_array(np.array([0] * rank + [big] * rank, np.int64), out + "_pads")
    m.graph.node.extend([
        helper.make_node("Constant", [], [out + "_pads"], value=pads),
        helper.make_node("Pad", [out + "_unpadded", out + "_pads"], [out]),
    ])  # fmt: skip
    return f"constant padded by {big}"


def _mut_strings(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Replace one printable run (a name, producer) by invalid UTF-8 of the same length."""
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
        return bytes(
            b[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + b[i:]
        ), "bytes inserted"
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
    _mut_constant_node, _mut_value_info, _mut_graph, _mut_graph, _mut_fold_bomb,
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
