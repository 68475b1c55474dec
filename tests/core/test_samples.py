"""The bundled sample models: present, runnable, accurate, and sensitive to bit width.

Each sample is run in plain ONNX Runtime on its own held-out data. Its weights are then
fake-quantized in place (directly on the initializers, with the output-channel axis of
each op) and run again: int8 per channel must stay within a point of float, binary
must be clearly worse. That is the behaviour Bitlens' accuracy-vs-bits views rely on.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from bitlens.core.errors import BitlensError, DataError
from bitlens.core.formats import fake_quantize, parse_format
from bitlens.core.samples import (
    DEFAULT_SAMPLE,
    accuracy,
    get_sample,
    list_samples,
    load_sample_data,
    resources_dir,
)

# name -> (domain, lowest acceptable float accuracy, least drop from float to binary)
EXPECTED = {
    "digits_cnn": ("image", 0.97, 0.15),
    "speech_kws": ("speech", 0.90, 0.20),
    "text_transformer": ("text", 0.95, 0.20),
}
QUANTIZED_OPS = ("Conv", "Gemm", "MatMul", "LSTM", "GRU", "Gather")
MAX_SAMPLE_BYTES = 3 * 1024 * 1024
REPO_RESOURCES = Path(__file__).resolve().parents[2] / "resources"


@pytest.fixture(autouse=True)
def _repository_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test the repository's copy even where the environment points elsewhere."""
    monkeypatch.delenv("BITLENS_RESOURCES", raising=False)


def _weight_slots(node: onnx.NodeProto) -> list[int]:
    """Which inputs of a node are weights (biases and states stay float)."""
    if node.op_type in ("LSTM", "GRU"):
        return [1, 2]  # W, R
    if node.op_type == "Gather":
        return [0]  # the embedding table
    return [1]


def _output_channel_axis(node: onnx.NodeProto, slot: int, w: np.ndarray) -> int:
    if node.op_type in ("LSTM", "GRU"):
        return 1  # [directions, gates*hidden, in]
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return w.ndim - 1  # x @ W: W is [in, out]
    return 0  # Conv [out, in, kh, kw]; Gather rows (one per token)


def quantize_weights(model: onnx.ModelProto, fmt_text: str) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` whose Conv/Gemm/MatMul/LSTM/GRU/Gather float weights are
    fake-quantized to ``fmt_text`` per output channel; also returns how many were."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: i for i in out.graph.initializer}
    fmt = parse_format(fmt_text)
    done: set[str] = set()
    for node in out.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        for slot in _weight_slots(node):
            name = node.input[slot] if slot < len(node.input) else ""
            if name not in inits or name in done:
                continue
            w = numpy_helper.to_array(inits[name])
            if w.dtype != np.float32:
                continue
            q = fake_quantize(w, fmt.with_axis(_output_channel_axis(node, slot, w)))
            inits[name].CopyFrom(numpy_helper.from_array(q.astype(np.float32), name))
            done.add(name)
    return out, len(done)


def run_accuracy(model: onnx.ModelProto, name: str) -> float:
    inputs, labels = _data(name)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(["logits"], inputs)
    return accuracy(logits, labels)


@functools.cache
def _model(name: str) -> onnx.ModelProto:
    return onnx.load(get_sample(name).model_path)


@functools.cache
def _data(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return load_sample_data(get_sample(name))


@functools.cache
def _float_accuracy(name: str) -> float:
    return run_accuracy(_model(name), name)


def test_resources_dir_is_the_repository_copy() -> None:
    assert resources_dir() == REPO_RESOURCES


def test_list_samples_default_first() -> None:
    samples = list_samples()
    assert [s.name for s in samples] == list(EXPECTED)
    assert samples[0].name == DEFAULT_SAMPLE == "digits_cnn"
    for s in samples:
        assert s.domain == EXPECTED[s.name][0]
        assert s.title and s.title == s.meta["title"]
        assert s.model_path.is_file() and s.data_path.is_file()


def test_unknown_sample_names_the_known_ones() -> None:
    with pytest.raises(BitlensError, match=r"unknown sample 'mnist'.*digits_cnn"):
        get_sample("mnist")


def test_resources_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("BITLENS_RESOURCES", str(missing))
    with pytest.raises(BitlensError, match="nowhere"):
        resources_dir()
    copy = tmp_path / "res"
    shutil.copytree(REPO_RESOURCES / "samples" / DEFAULT_SAMPLE,
                    copy / "samples" / DEFAULT_SAMPLE)
    monkeypatch.setenv("BITLENS_RESOURCES", str(copy))
    assert resources_dir() == copy
    assert [s.name for s in list_samples()] == [DEFAULT_SAMPLE]


def test_resources_in_pyinstaller_bundle(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    (tmp_path / "resources" / "samples").mkdir(parents=True)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources_dir() == tmp_path / "resources"


def test_bad_data_file_is_a_data_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "samples" / "broken"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"title": "Broken", "domain": "image"}))
    (folder / "model.onnx").write_bytes(b"")
    np.savez(folder / "data.npz", x=np.zeros((3, 2), np.float32), labels=np.zeros(4, np.int64))
    monkeypatch.setenv("BITLENS_RESOURCES", str(tmp_path))
    with pytest.raises(DataError, match="'x' has shape \\(3, 2\\), expected 4 samples"):
        load_sample_data(get_sample("broken"))
    np.savez(folder / "data.npz", x=np.zeros((3, 2), np.float32))
    with pytest.raises(DataError, match="no 'labels'"):
        load_sample_data(get_sample("broken"))


def test_accuracy_function() -> None:
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert accuracy(logits, np.array([1, 0, 0, 0])) == 0.75
    with pytest.raises(DataError, match="logits"):
        accuracy(logits, np.array([1, 0]))


@pytest.mark.parametrize("name", list(EXPECTED))
def test_float_accuracy_matches_meta(name: str) -> None:
    model = _model(name)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    acc = _float_accuracy(name)
    assert acc == pytest.approx(get_sample(name).meta["float_accuracy"], abs=1e-9)
    assert acc >= EXPECTED[name][1]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_int8_keeps_and_binary_loses_accuracy(name: str) -> None:
    fp = _float_accuracy(name)
    int8_model, n8 = quantize_weights(_model(name), "int8 sym ch")
    bin_model, nb = quantize_weights(_model(name), "bin ch")
    assert n8 == nb >= 2
    assert abs(run_accuracy(int8_model, name) - fp) <= 0.01
    assert run_accuracy(bin_model, name) <= fp - EXPECTED[name][2]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_meta_matches_files(name: str) -> None:
    sample = get_sample(name)
    meta = sample.meta
    folder = sample.model_path.parent
    total = 0
    for fname, rec in meta["files"].items():
        data = (folder / fname).read_bytes()
        assert len(data) == rec["bytes"], fname
        assert hashlib.sha256(data).hexdigest() == rec["sha256"], f"{fname} is stale"
        total += len(data)
    assert total + (folder / "meta.json").stat().st_size < MAX_SAMPLE_BYTES

    model = _model(name)
    graph_inputs = [i for i in model.graph.input
                    if i.name not in {x.name for x in model.graph.initializer}]
    assert [i.name for i in graph_inputs] == [meta["input"]["name"]]
    dims = graph_inputs[0].type.tensor_type.shape.dim
    assert dims[0].dim_param  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == meta["input"]["shape"][1:]
    assert [o.name for o in model.graph.output] == [meta["output"]["name"]]
    assert all(i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)
               for i in model.graph.initializer)

    inputs, labels = _data(name)
    assert list(inputs) == [meta["input"]["name"]]
    x = inputs[meta["input"]["name"]]
    assert str(x.dtype) == meta["input"]["dtype"]
    assert list(x.shape[1:]) == meta["input"]["shape"][1:]
    assert len(labels) == meta["n_samples"] <= 500
    assert set(np.unique(labels)) <= set(range(len(meta["class_names"])))
    assert meta["task"] == "classification" and meta["metric"] == "accuracy"
    assert (resources_dir().parent / meta["made_by"]["script"]).is_file()
    assert meta["made_by"]["versions"]["torch"]


def test_text_ids_follow_the_documented_preprocessing() -> None:
    """Re-tokenizing the shipped sentences with the shipped vocabulary, as meta.json
    describes, gives exactly the evaluation token ids."""
    sample = get_sample("text_transformer")
    spec = sample.meta["input"]
    folder = sample.model_path.parent
    vocab = json.loads((folder / spec["vocab_file"]).read_text(encoding="utf-8"))
    texts = json.loads((folder / spec["texts_file"]).read_text(encoding="utf-8"))
    index = {tok: i for i, tok in enumerate(vocab)}
    assert vocab[:2] == ["[PAD]", "[UNK]"]
    ids = np.zeros((len(texts), spec["max_length"]), np.int64)
    for row, text in enumerate(texts):
        toks = [index.get(w, 1) for w in re.findall(r"[a-z']+|[.,!?]", text.lower())]
        ids[row, :len(toks)] = toks
    np.testing.assert_array_equal(ids, _data("text_transformer")[0][spec["name"]])
    embed = next(i for i in _model("text_transformer").graph.initializer
                 if i.name == "embed.weight")
    assert embed.dims[0] == len(vocab)
