"""Benchmark models generated on demand (never committed).

- :func:`crnn`: a CRNN-like text recognizer of about 10 MB: 42 convolutions in residual
  blocks over a 48x320 image, the height pooled away, a bidirectional LSTM over the 80
  columns and a per-column classifier, like the OCR models people export (e.g. ddddocr's
  ``common.onnx``, https://github.com/sml2h3/ddddocr).
- :func:`mlp_stack`: ``depth`` x (MatMul + Add + Relu) of ``width`` features: 25 layers of
  1024 make the 100 MB model; 10 to 200 layers of 256 the growth-with-depth series.
- :func:`write_external_mlp`: the same stack written as a small .onnx file and one external
  data file, weight by weight (10 x 8192 x 8192 = 2.7 GB), never holding the whole model.

Weights are Gaussian with a fan-in scale from a seeded RNG, so every call builds the
same model.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CRNN_STAGES = ((32, 3, 2, 2), (64, 4, 2, 2), (96, 5, 2, 1), (144, 8, 3, 1))
# (channels, residual blocks, height stride, width stride); each block: conv3x3 + conv1x1,
# each stage opens with a strided conv3x3: 4 + 2 x 20 = 44 convolutions.
CRNN_CLASSES = 100
CRNN_HIDDEN = 128


def _w(rng, shape, fan_in) -> np.ndarray:
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def crnn(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    count = [0]

    def conv(x: str, cin: int, cout: int, k: int, strides=(1, 1), relu=True) -> str:
        i = count[0]
        count[0] += 1
        inits.append(numpy_helper.from_array(_w(rng, (cout, cin, k, k), cin * k * k), f"W{i}"))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32) + 0.01, f"B{i}"))
        pad = k // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"W{i}", f"B{i}"],
                [f"c{i}"],
                name=f"conv{i}",
                pads=[pad] * 4,
                strides=list(strides),
            )
        )
        if not relu:
            return f"c{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        return f"r{i}"

    x, cin = "image", 3
    for s, (ch, blocks, sh, sw) in enumerate(CRNN_STAGES):
        x = conv(x, cin, ch, 3, (sh, sw))
        cin = ch
        for b in range(blocks):
            y = conv(x, ch, ch, 3)
            y = conv(y, ch, ch, 1, relu=False)
            nodes.append(helper.make_node("Add", [x, y], [f"s{s}_{b}"], name=f"add{s}_{b}"))
            nodes.append(
                helper.make_node("Relu", [f"s{s}_{b}"], [f"sr{s}_{b}"], name=f"addrelu{s}_{b}")
            )
            x = f"sr{s}_{b}"
    # [N, C, 2, 80] -> mean over height -> [80, N, C] (sequence first, as ONNX LSTM wants)
    nodes += [
        helper.make_node("ReduceMean", [x], ["pooled"], name="pool_h", axes=[2], keepdims=0),
        helper.make_node("Transpose", ["pooled"], ["seq"], name="to_seq", perm=[2, 0, 1]),
    ]
    h = CRNN_HIDDEN
    inits += [
        numpy_helper.from_array(_w(rng, (2, 4 * h, cin), cin), "lstm_W"),
        numpy_helper.from_array(_w(rng, (2, 4 * h, h), h), "lstm_R"),
        numpy_helper.from_array(np.zeros((2, 8 * h), np.float32), "lstm_B"),
        numpy_helper.from_array(_w(rng, (2 * h, CRNN_CLASSES), 2 * h), "fc_W"),
        numpy_helper.from_array(np.zeros(CRNN_CLASSES, np.float32), "fc_B"),
    ]
    nodes += [
        helper.make_node(
            "LSTM",
            ["seq", "lstm_W", "lstm_R", "lstm_B"],
            ["lstm_y"],
            name="lstm",
            hidden_size=h,
            direction="bidirectional",
        ),
        # [T, 2, N, H] -> [T, N, 2, H] -> [T, N, 2H]
        helper.make_node("Transpose", ["lstm_y"], ["lstm_t"], name="lstm_t", perm=[0, 2, 1, 3]),
        helper.make_node("Shape", ["seq"], ["seq_shape"], name="seq_shape"),
        helper.make_node("Slice", ["seq_shape", "s0", "s2"], ["tn"], name="tn"),
        helper.make_node("Concat", ["tn", "minus1"], ["to3"], name="to3", axis=0),
        helper.make_node("Reshape", ["lstm_t", "to3"], ["feat"], name="feat"),
        helper.make_node("MatMul", ["feat", "fc_W"], ["fc"], name="fc"),
        helper.make_node("Add", ["fc", "fc_B"], ["logits"], name="fc_bias"),
    ]
    inits += [
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([2], np.int64), "s2"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
    ]
    graph = helper.make_graph(
        nodes,
        "bench_crnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 48, 320])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [80, "N", CRNN_CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def mlp_stack(depth: int, width: int, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "x"
    for i in range(depth):
        inits += [
            numpy_helper.from_array(_w(rng, (width, width), width), f"W{i}"),
            numpy_helper.from_array(np.full(width, 0.01, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("MatMul", [x, f"W{i}"], [f"m{i}"], name=f"mm{i}"),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
            helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        x = f"r{i}"
    graph = helper.make_graph(
        nodes,
        "bench_mlp_stack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def write_external_mlp(folder: Path, depth: int = 10, width: int = 8192, seed: int = 0) -> Path:
    """``mlp_stack(depth, width)`` with every weight in ``weights.bin`` next to the model;
    the weights are generated and written one at a time."""
    rng = np.random.default_rng(seed)
    model = mlp_stack(1, 1)  # the frame; its graph is rebuilt below
    nodes, inits = [], []
    x = "x"
    offset = 0
    with open(folder / "weights.bin", "wb") as fh:
        for i in range(depth):
            w = _w(rng, (width, width), width)
            fh.write(w.tobytes())
            t = onnx.TensorProto(name=f"W{i}", data_type=TensorProto.FLOAT, dims=w.shape)
            t.data_location = TensorProto.EXTERNAL
            for key, value in (
                ("location", "weights.bin"),
                ("offset", offset),
                ("length", w.nbytes),
            ):
                entry = t.external_data.add()
                entry.key, entry.value = key, str(value)
            offset += w.nbytes
            del w
            inits += [t, numpy_helper.from_array(np.full(width, 0.01, np.float32), f"b{i}")]
            nodes += [
                helper.make_node("MatMul", [x, f"W{i}"], [f"m{i}"], name=f"mm{i}"),
                helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
                helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"),
            ]
            x = f"r{i}"
    model.graph.CopyFrom(
        helper.make_graph(
            nodes,
            "bench_external_mlp",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
            [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", width])],
            inits,
        )
    )
    path = folder / "external_mlp.onnx"
    onnx.save_model(model, path)
    return path


if __name__ == "__main__":
    m = crnn()
    n = sum(np.prod(t.dims) for t in m.graph.initializer) * 4
    convs = sum(1 for nd in m.graph.node if nd.op_type == "Conv")
    print(f"crnn: {n / 1e6:.1f} MB, {convs} convs")


def crnn_or_files(
    names: list[str], folder: Path, dims: dict[str, int]
) -> Iterator[tuple[Path, dict[str, int], str]]:
    """(model file, input sizes, label) per name: ``crnn`` is :func:`crnn` written to
    ``folder`` (one row a sample), any other name a model file with ``dims``."""
    for name in names:
        if name == "crnn":
            path = folder / "crnn.onnx"
            onnx.save(crnn(), path)
            yield path, {"N": 1}, "generated CRNN-like recognizer"
        else:
            yield Path(name), dims, name


def per_model(description: str, samples: int, opens_help: str, report: Callable) -> None:
    """The command line of bench_open.py and bench_floors.py: model names (``crnn`` or
    files), ``--dim NAME=SIZE``, ``--samples``, ``--opens``; ``report(label, path, dims,
    samples, opens)`` per model."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("models", nargs="*", default=["crnn"], help="crnn or a path")
    ap.add_argument("--dim", action="append", default=[], help="NAME=SIZE for a file's inputs")
    ap.add_argument("--samples", type=int, default=samples, help=f"random samples ({samples})")
    ap.add_argument("--opens", type=int, default=3, help=opens_help)
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    with tempfile.TemporaryDirectory() as tmp:
        for path, sizes, label in crnn_or_files(args.models, Path(tmp), dims):
            report(label, path, sizes, args.samples, args.opens)
