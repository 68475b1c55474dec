"""Short layer names (core/layer_names.py): the segments that tell layers apart."""

from __future__ import annotations

from bitlens.core.layer_names import short_names

BERT = "/model/model.0/auto_model"
MINILM = [
    f"{BERT}/embeddings/{k}_embeddings/Gather" for k in ("word", "token_type", "position")
] + [
    f"{BERT}/encoder/layer.{i}/{part}/MatMul"
    for i in range(3)
    for part in ("attention/self/query", "attention/self/key", "attention/self/value",
                 "attention/output/dense", "intermediate/dense", "output/dense")
]  # fmt: skip
FSMN = [f"/encoder/in_linear{i}/linear/MatMul" for i in (1, 2)] + [
    f"/encoder/fsmn.{i}/{part}"
    for i in range(4)
    for part in ("linear/linear/MatMul", "fsmn_block/conv_left/Conv", "affine/linear/MatMul")
]


def test_minilm_names_keep_index_and_role():
    short = short_names(MINILM)
    assert len(set(short.values())) == len(MINILM)
    assert short[f"{BERT}/embeddings/word_embeddings/Gather"] == "word_embeddings/Gather"
    assert short[f"{BERT}/encoder/layer.0/attention/self/query/MatMul"] == (
        "layer.0/attention/query/MatMul"
    )
    assert short[f"{BERT}/encoder/layer.2/attention/output/dense/MatMul"] == (
        "layer.2/attention/output/MatMul"
    )
    assert short[f"{BERT}/encoder/layer.1/output/dense/MatMul"] == "layer.1/output/MatMul"
    assert short[f"{BERT}/encoder/layer.1/intermediate/dense/MatMul"] == (
        "layer.1/intermediate/MatMul"
    )
    # short enough that a 21-character middle elision keeps both ends meaningful
    assert max(len(s) for s in short.values()) <= 31


def test_fsmn_names_keep_block_index():
    short = short_names(FSMN)
    assert len(set(short.values())) == len(FSMN)
    assert short["/encoder/fsmn.2/linear/linear/MatMul"] == "fsmn.2/linear/MatMul"
    assert short["/encoder/fsmn.0/affine/linear/MatMul"] == "fsmn.0/affine/linear/MatMul"
    assert short["/encoder/in_linear2/linear/MatMul"] == "in_linear2/linear/MatMul"
    # a block index is never dropped, even in a model with two blocks where it could be
    two = short_names([f"/m/layer.{i}/attention/{p}/MatMul" for i in (0, 1) for p in "qk"])
    assert set(two.values()) == {f"layer.{i}/{p}/MatMul" for i in (0, 1) for p in "qk"}


def test_plain_and_odd_names():
    assert short_names(["conv1", "fc", "Conv_3"]) == {"conv1": "conv1", "fc": "fc", "Conv_3": "Conv_3"}
    assert short_names(["/Conv", "/Conv_1"]) == {"/Conv": "Conv", "/Conv_1": "Conv_1"}
    assert short_names([]) == {}
    # repeated names (never in a valid graph) map once; a lone slash keeps a name
    assert short_names(["/a/x", "/a/x", "/"]) == {"/a/x": "x", "/": "/"}
    # the last segment always stays, even where a shorter name would be unique
    assert short_names(["/a/b/Gemm"]) == {"/a/b/Gemm": "Gemm"}
