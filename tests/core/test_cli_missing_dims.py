"""A model with two dynamic sizes and no data: the one-line error names every ``--dim`` it
needs, not only the first (pyfrspell's lemmatizer, src [batch, src_seq] and tgt_in [batch,
tgt_seq], took two failed runs to learn its two sizes), and inspect names both for its MAC
count. Given both, the model runs on random inputs."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from tests.builders import init, model, weights
from tests.core.test_cli_entry import run_cli


def _two_sequences() -> onnx.ModelProto:
    """Two inputs of their own lengths, each through a MatMul::

    src[batch, src_seq, 4] -> MatMul(w.src[4, 3]) -> a[batch, src_seq, 3]
    tgt_in[batch, tgt_seq, 4] -> MatMul(w.tgt[4, 3]) -> b[batch, tgt_seq, 3]
    """
    f = TensorProto.FLOAT
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["src", "w.src"], ["a"], name="enc"),
            helper.make_node("MatMul", ["tgt_in", "w.tgt"], ["b"], name="dec"),
        ],
        "two_sequences",
        [
            helper.make_tensor_value_info("src", f, ["batch", "src_seq", 4]),
            helper.make_tensor_value_info("tgt_in", f, ["batch", "tgt_seq", 4]),
        ],
        [
            helper.make_tensor_value_info("a", f, ["batch", "src_seq", 3]),
            helper.make_tensor_value_info("b", f, ["batch", "tgt_seq", 3]),
        ],
        [init("w.src", weights((4, 3), seed=1)), init("w.tgt", weights((4, 3), seed=2))],
    )
    return model(g)


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory):
    p = tmp_path_factory.mktemp("dims") / "two.onnx"
    onnx.save(_two_sequences(), p)
    return p


def test_eval_names_every_missing_dim_in_one_line(path) -> None:
    res = run_cli("eval", str(path), "--preset", "W8A8")
    assert res.returncode == 2
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "give it with --dim src_seq=SIZE; the model also needs --dim tgt_seq=SIZE" in err
    res = run_cli("eval", str(path), "--preset", "W8A8", "--dim", "tgt_seq=5")
    assert res.returncode == 2
    assert res.stderr.strip().endswith("give it with --dim src_seq=SIZE"), res.stderr
    res = run_cli("eval", str(path), "--preset", "W8A8", "--dim", "tgt_seq=5", "--dim", "src_seq=7")
    assert res.returncode == 0, res.stderr


def test_inspect_names_every_missing_dim_for_its_mac_count(path) -> None:
    res = run_cli("inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert (
        "input 'src' needs --dim src_seq=SIZE, input 'tgt_in' needs --dim tgt_seq=SIZE "
        "to count it" in res.stdout
    ), res.stdout
