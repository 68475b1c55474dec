"""Which layers a plan's export writes as integer kernels, found once per plan by the search's
accounting (core/search/filesize.py ``FileSizes.kernels``) from readers indexed once per model
(``ModelInfo.main_readers``): same answers, asked of every plan the accounting sizes
(its file bytes, its opset, its export). docs/finding-a-plan.md, "Search time (session 13)".

    x -> Conv -> Relu -> Conv -> Relu -> GAP -> Flatten -> Gemm -> y   (engine_models.small_cnn,
    labelled as tests/core/test_search_passes.py labels it)
"""

from __future__ import annotations

from collections import Counter

from bitlens.core.export.kernels import integer_kernel_layers
from bitlens.core.formats import parse_format
from bitlens.core.model import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.search import filesize
from bitlens.core.search.filesize import FileSizes
from tests import builders
from tests.core.test_search_passes import _labelled_engine


def test_kernel_layers_found_once_per_plan(monkeypatch) -> None:
    engine = _labelled_engine()
    u8, i8 = parse_format("uint8 asym"), parse_format("int8 sym ch")
    plans = [
        Plan(engine.info).with_choices({n: LayerChoice(i8, u8) for n in engine.info.layer_names}),
        Plan(engine.info).with_choices({"conv2": LayerChoice(i8, u8), "fc": LayerChoice(i8)}),
    ]
    expected = {p: integer_kernel_layers(engine.info, p, engine.placement(p)) for p in plans}
    assert any(expected.values())  # the W8A8-like plan has integer-kernel layers
    calls: Counter = Counter()
    real = filesize.integer_kernel_layers

    def counted(info, plan, placed=None):
        calls[plan] += 1
        return real(info, plan, placed)

    monkeypatch.setattr(filesize, "integer_kernel_layers", counted)
    sizes = FileSizes(engine)
    for plan in plans:
        for _ in range(2):  # what the accounting asks of a plan, twice over
            sizes.file_bytes(plan)
            sizes.needed_opset(plan)
            sizes.opset(plan)
            assert sizes.kernels(plan) == expected[plan]
    assert dict(calls) == {p: 1 for p in plans}  # the old code: 10 calls per plan


def test_main_readers_are_the_main_graphs_nodes_reading_each_tensor() -> None:
    for m in (builders.conv_net(), builders.lstm_in_if()):
        info = from_proto(m).info
        expected: dict[str, list] = {}
        for node in info.nodes:
            if not node.graph_path:
                for t in node.inputs:
                    expected.setdefault(t, []).append(node)
        assert {t: list(n) for t, n in info.main_readers.items()} == expected
    # the If's branches read x and the else branch's weights: none of theirs is listed
    readers = from_proto(builders.lstm_in_if()).info.main_readers
    assert [n.op_type for n in readers["cond"]] == ["If"]
    assert "x" not in readers and "else.W" not in readers
