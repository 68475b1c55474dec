"""Every tensor an export stores is read by a node: attacut-sc's embeddings at W8A8 left a
``*_shape`` initializer per folded weight that nothing read, and ONNX Runtime logged
"Removing initializer ... It is not used by any node" each time the file was opened."""

from __future__ import annotations

import onnx
import pytest

from bitlens.core.export.weights import FOLD
from bitlens.core.plan import Plan
from tests import builders
from tests.core.test_export_models import make_engine, run
from tests.core.test_export_weights import FOLD_FORMATS, _rebuild


def _unread(graph: onnx.GraphProto) -> list[str]:
    read = {i for n in graph.node for i in n.input}
    read |= {o.name for o in graph.output}
    return [t.name for t in graph.initializer if t.name not in read]


@pytest.mark.parametrize("name", FOLD_FORMATS)
def test_folded_weight_stores_nothing_unread(name: str) -> None:
    _, _, model, _, _ = _rebuild(name, FOLD)
    assert _unread(model.graph) == []


def test_w8a8_export_of_an_embedding_stores_nothing_unread(tmp_path) -> None:
    engine = make_engine(builders.embedding_model())
    out = tmp_path / "e.onnx"
    _, report = run(engine, Plan.preset(engine.info, "W8A8"), out)
    assert report.passed, report.failures
    assert _unread(onnx.load(out).graph) == []
